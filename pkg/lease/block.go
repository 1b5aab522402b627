package lease

import (
	"math"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// block is one replica's lease of a key's quota, and what the store said
// about the key when it last answered for it. Its methods are pure: time is
// passed in, and nothing but the block changes.
type block struct {
	limit limiter.Limit
	gen   uint64 // incremented by every grant, so a give-back finds its block

	// The current grant (granted == 0: none).
	sent    time.Time // when the grant was asked for (before the store counted it)
	granted int64     // hits the store counted for this replica
	used    int64     // hits admitted from the grant (given back ones excluded)
	end     time.Time // the grant holds nothing from end on
	emit    time.Duration
	mark    int64 // the store's mark of the grant (blockStore); -1 none

	// The store's last word on the key: Remaining and ResetAfter at
	// learned, valid until known (windows) or refilled from then (bucket).
	remaining int64
	reset     time.Duration
	learned   time.Time
	known     time.Time // windows: the end of the window remaining is about
}

// ceilDiv is ceil(a/b) for a >= 0, b > 0.
func ceilDiv(a, b time.Duration) int64 {
	q := int64(a / b)
	if a%b != 0 {
		q++
	}
	return q
}

// spent returns how much of the grant is gone at now: the hits admitted
// from it and, for the token bucket, at least what has decayed: the grant
// loses a token per emission interval as the store's bucket refills, so
// that the store's tokens plus the tokens held in grants never exceed the
// burst (a hit admitted before its token decayed counts once).
func (b *block) spent(now time.Time) int64 {
	if b.emit == 0 {
		return b.used
	}
	return max(b.used, ceilDiv(max(now.Sub(b.sent), 0), b.emit))
}

// avail returns how many hits the grant still admits at now.
func (b *block) avail(now time.Time) int64 {
	if b.granted == 0 || !now.Before(b.end) {
		return 0
	}
	return max(b.granted-b.spent(now), 0)
}

// take admits hits from the grant at now and fills r, or reports false and
// changes nothing.
func (b *block) take(now time.Time, hits int64, r *limiter.Result) bool {
	left := b.avail(now)
	if hits > left {
		return false
	}
	b.used = b.spent(now) + hits
	b.result(now, left-hits, r)
	return true
}

// giveBack returns hits admitted from grant gen (a call that counted
// nothing); a later grant keeps its own count.
func (b *block) giveBack(gen uint64, hits int64) {
	if gen == b.gen && b.granted > 0 {
		b.used = max(b.used-hits, 0)
	}
}

// unused is a grant detached from its block to be returned to the store.
type unused struct {
	limit         limiter.Limit
	mark          int64
	granted, used int64
}

// detach ends the grant at now, so that its unused hits can be returned,
// and reports false (changing nothing) when it has none the store could
// still take back: no grant or no mark, every hit used, a fixed window
// over, a sliding window one period past its end (the store still counts
// the block's window as the previous one until then), a token bucket
// block decayed. Hits admitted from the grant and given back later are
// not returned (giveBack ignores an ended grant): they stay counted.
func (b *block) detach(now time.Time) (unused, bool) {
	if b.granted == 0 || b.mark < 0 || b.used >= b.granted {
		return unused{}, false
	}
	end := b.end
	if b.limit.Algorithm == limiter.SlidingWindow {
		end = end.Add(b.limit.Period)
	}
	if !now.Before(end) || (b.emit > 0 && b.avail(now) == 0) {
		return unused{}, false
	}
	u := unused{limit: b.limit, mark: b.mark, granted: b.granted, used: b.used}
	b.gen++
	b.granted, b.used = 0, 0
	return u, true
}

// result fills r for hits admitted at now with left hits left in the
// grant. Remaining is an estimate: the store's Remaining when it last
// answered plus the grant's hits left (other replicas may have used some
// since); ResetAfter is the store's, counted down from when it answered.
func (b *block) result(now time.Time, left int64, r *limiter.Result) {
	*r = limiter.Result{
		Allowed:    true,
		Limit:      b.limit.Capacity(),
		Remaining:  min(b.remaining+left, b.limit.Capacity()),
		ResetAfter: max(b.reset-now.Sub(b.learned), 0),
	}
}

// grant records a block of hits the store counted, asked for at sent, with
// the store's Result r (Allowed) and mark (-1: none, it cannot be
// returned). The block ends with the window it was counted in: fixed
// window ResetAfter, sliding window ResetAfter minus a period (the current
// window holds hits, so the estimate reaches zero a period after its end);
// the token bucket's when it has decayed.
func (b *block) grant(sent time.Time, hits int64, r limiter.Result, mark int64) {
	b.gen++
	b.sent, b.granted, b.used, b.mark = sent, hits, 0, mark
	b.emit = 0
	switch b.limit.Algorithm {
	case limiter.FixedWindow:
		b.end = sent.Add(r.ResetAfter)
	case limiter.SlidingWindow:
		b.end = sent.Add(max(r.ResetAfter-b.limit.Period, 0))
	default:
		b.emit = b.limit.Emission()
		life := time.Duration(math.MaxInt64)
		if hits < math.MaxInt64/int64(b.emit) {
			life = time.Duration(hits) * b.emit
		}
		b.end = sent.Add(life)
	}
	b.learn(sent, r)
}

// learn records the store's Result r for the key, answered for a call sent
// at sent.
func (b *block) learn(sent time.Time, r limiter.Result) {
	b.remaining, b.reset, b.learned = r.Remaining, r.ResetAfter, sent
	switch b.limit.Algorithm {
	case limiter.FixedWindow:
		b.known = sent.Add(r.ResetAfter)
	case limiter.SlidingWindow:
		// The window ends within a period: ResetAfter is its end, or a
		// period later when it holds hits.
		end := r.ResetAfter
		if end > b.limit.Period {
			end -= b.limit.Period
		}
		b.known = sent.Add(end)
	default:
		b.known = time.Time{}
	}
}

// estimate returns the key's remaining quota at now as far as this replica
// knows: the store's last Remaining while its window lasts (the capacity
// after it, or before any answer), and for the token bucket that Remaining
// plus the tokens refilled since.
func (b *block) estimate(now time.Time) int64 {
	c := b.limit.Capacity()
	switch {
	case b.learned.IsZero():
		return c
	case b.limit.Algorithm == limiter.TokenBucket:
		if b.limit.Requests == 0 {
			return 0
		}
		refill := int64(max(now.Sub(b.learned), 0) / b.limit.Emission())
		return min(b.remaining+refill, c)
	case !now.Before(b.known):
		return c
	}
	return b.remaining
}

// size returns the block to ask for so that hits are admitted at now:
// max(hits, floor(fraction × estimate)), or 0 when that is no more than
// hits (leasing would save nothing).
func (b *block) size(now time.Time, hits int64, fraction float64) int64 {
	n := int64(fraction * float64(b.estimate(now)))
	if n <= hits {
		return 0
	}
	return n
}
