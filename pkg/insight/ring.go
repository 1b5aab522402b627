package insight

// counts are weights by Outcome.
type counts [numOutcomes]int64

func (c *counts) add(o counts) {
	for i := range c {
		c[i] += o[i]
	}
}

func (c *counts) zero() bool { return *c == counts{} }

// admitted is every admitted weight: below and at the near-limit ratio and
// shadow (a shadow rule never refuses).
func (c *counts) admitted() int64 { return c[Admitted] + c[NearLimit] + c[Shadow] }

// bucket is one time bucket of a rule: the two sketches' summaries and the
// counts.
type bucket struct {
	start    int64 // unix seconds; 0: empty
	ref, adm list
	c        counts
}

// ring holds the buckets of one width, the newest len(b) of them: bucket
// of start s lives at index (s/width) mod len(b).
type ring struct {
	width int64
	b     []bucket
}

func newRing(width int64, n int) ring { return ring{width: width, b: make([]bucket, n)} }

// add merges a delta observed at t into its bucket. When that bucket held
// an older one, the older one is returned (evicted).
func (r *ring) add(k int, t int64, ref, adm list, c counts) (old bucket, evicted bool) {
	start := t - t%r.width
	b := &r.b[(start/r.width)%int64(len(r.b))]
	if b.start != start {
		old, evicted = *b, b.start != 0
		*b = bucket{start: start}
	}
	if len(ref.Entries) > 0 || ref.N > 0 {
		b.ref = merge(k, b.ref, ref)
	}
	if len(adm.Entries) > 0 || adm.N > 0 {
		b.adm = merge(k, b.adm, adm)
	}
	b.c.add(c)
	return old, evicted
}

// at returns the bucket that starts at start, if held.
func (r *ring) at(start int64) (*bucket, bool) {
	b := &r.b[(start/r.width)%int64(len(r.b))]
	return b, b.start == start && start != 0
}

// window merges the buckets of the window of span seconds ending at now.
func (r *ring) window(k int, now, span int64) (ref, adm list, c counts) {
	var refs, adms []list
	for _, start := range bucketStarts(now, span, r.width) {
		if b, ok := r.at(start); ok {
			refs, adms = append(refs, b.ref), append(adms, b.adm)
			c.add(b.c)
		}
	}
	return merge(k, refs...), merge(k, adms...), c
}

// bucketStarts lists, newest first, the starts of the buckets of width that
// make up the window of span seconds ending at now: the current bucket and
// those before it that start within span of now's bucket (so the window
// covers between span and span+width seconds).
func bucketStarts(now, span, width int64) []int64 {
	cur := now - now%width
	n := span / width
	out := make([]int64, 0, n+1)
	for i := int64(0); i <= n; i++ {
		if s := cur - i*width; s > 0 {
			out = append(out, s)
		}
	}
	return out
}
