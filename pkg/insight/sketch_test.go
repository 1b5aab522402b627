package insight

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
)

// checkBound checks l against the exact counts of its stream: every listed
// count overestimates by at most l.Floor, every unlisted value weighs at
// most l.Floor, and l.Floor <= slack*N/k.
func checkBound(t *testing.T, l list, exact map[string]int64, k int, slack int64) {
	t.Helper()
	var n int64
	for _, c := range exact {
		n += c
	}
	if l.N != n {
		t.Errorf("N = %d, want %d", l.N, n)
	}
	if l.Floor > slack*n/int64(k) {
		t.Errorf("floor %d > %d*N/k = %d", l.Floor, slack, slack*n/int64(k))
	}
	if len(l.Entries) > k {
		t.Errorf("%d entries > k = %d", len(l.Entries), k)
	}
	listed := map[string]bool{}
	for _, e := range l.Entries {
		listed[e.Value] = true
		tr := exact[e.Value]
		if e.Count < tr || e.Count-tr > l.Floor {
			t.Errorf("%s: count %d, true %d, floor %d: want true <= count <= true+floor", e.Value, e.Count, tr, l.Floor)
		}
	}
	for v, c := range exact {
		if !listed[v] && c > l.Floor {
			t.Errorf("%s (true %d) not listed although above the floor %d", v, c, l.Floor)
		}
	}
}

// zipfStream returns n values drawn from a Zipf distribution over m values.
func zipfStream(seed uint64, n, m int) []string {
	r := rand.New(rand.NewPCG(seed, seed))
	z := rand.NewZipf(r, 1.2, 1, uint64(m-1))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("10.0.%d.%d", z.Uint64()/256, z.Uint64()%256)
	}
	return out
}

func feed(s *sketch, vals []string, w func(i int) int64) map[string]int64 {
	exact := map[string]int64{}
	for i, v := range vals {
		wt := w(i)
		s.add([]byte(v), wt, int64(i))
		exact[v] += wt
	}
	return exact
}

func one(int) int64 { return 1 }

func TestSketchZipf(t *testing.T) {
	const k = 64
	s := newSketch(k)
	vals := zipfStream(1, 200_000, 100_000)
	exact := feed(s, vals, one)
	l := s.top()
	checkBound(t, l, exact, k, 1)
	// The 10 heaviest are listed, in order of true weight within the bound.
	type kv struct {
		v string
		c int64
	}
	var all []kv
	for v, c := range exact {
		all = append(all, kv{v, c})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].c > all[j].c })
	for _, x := range all[:10] {
		if _, ok := l.find(x.v); !ok {
			t.Errorf("heavy %s (%d) not listed; floor %d", x.v, x.c, l.Floor)
		}
	}
}

func TestSketchWeighted(t *testing.T) {
	const k = 16
	s := newSketch(k)
	vals := zipfStream(2, 50_000, 5_000)
	exact := feed(s, vals, func(i int) int64 { return int64(1 + i%7) })
	checkBound(t, s.top(), exact, k, 1)
}

// TestSketchAdversarial feeds streams built to defeat Space-Saving: all
// distinct values first then the heavy ones, heavy ones first then a flood
// that churns every counter, and heavy values interleaved with a flood.
func TestSketchAdversarial(t *testing.T) {
	const k = 32
	flood := func(n int, prefix string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		return out
	}
	heavy := func(n int) []string {
		var out []string
		for i := range n {
			for h := range 3 {
				out = append(out, fmt.Sprintf("heavy-%d", h))
				_ = i
			}
		}
		return out
	}
	cases := map[string][]string{
		"flood then heavy": append(flood(10_000, "a"), heavy(2_000)...),
		"heavy then flood": append(heavy(2_000), flood(10_000, "b")...),
		"interleaved": func() []string {
			f, h := flood(12_000, "c"), heavy(2_000)
			var out []string
			for i := range f {
				out = append(out, f[i])
				if i < len(h) {
					out = append(out, h[i])
				}
			}
			return out
		}(),
		"sawtooth": func() []string {
			var out []string
			for round := range 50 {
				for i := range k + 1 {
					out = append(out, fmt.Sprintf("s%d", (round+i)%(k+1)))
				}
			}
			return out
		}(),
	}
	for name, vals := range cases {
		t.Run(name, func(t *testing.T) {
			s := newSketch(k)
			exact := feed(s, vals, one)
			l := s.top()
			checkBound(t, l, exact, k, 1)
			if name != "sawtooth" {
				for h := range 3 {
					if _, ok := l.find(fmt.Sprintf("heavy-%d", h)); !ok {
						t.Errorf("heavy-%d (true %d) not listed, floor %d", h, exact[fmt.Sprintf("heavy-%d", h)], l.Floor)
					}
				}
			}
		})
	}
}

// TestMerge: merging sketches of disjoint parts keeps the guarantee, with
// the parts' bounds summed.
func TestMerge(t *testing.T) {
	const k = 32
	vals := zipfStream(3, 90_000, 20_000)
	exact := map[string]int64{}
	var parts []list
	for p := range 3 {
		s := newSketch(k)
		part := vals[p*30_000 : (p+1)*30_000]
		for v, c := range feed(s, part, one) {
			exact[v] += c
		}
		parts = append(parts, s.top())
	}
	m := merge(k, parts...)
	checkBound(t, m, exact, k, 2)
	// Merging again with an empty list changes nothing.
	if m2 := merge(k, m, list{}); m2.Floor != m.Floor || len(m2.Entries) != len(m.Entries) {
		t.Errorf("merge with empty: floor %d/%d entries %d/%d", m2.Floor, m.Floor, len(m2.Entries), len(m.Entries))
	}
}

func TestSketchNoAllocForTracked(t *testing.T) {
	s := newSketch(8)
	key := []byte("203.0.113.7")
	s.add(key, 1, 0)
	if n := testing.AllocsPerRun(1000, func() { s.add(key, 1, 1) }); n != 0 {
		t.Errorf("add of a tracked value: %v allocations, want 0", n)
	}
}
