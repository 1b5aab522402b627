package limiter

import "time"

// The three algorithms. Each takes the current time as Unix nanoseconds and
// works in integer nanoseconds; l has been checked by Eval (Period > 0,
// Requests >= 0, Burst >= 0) and hits >= 0. Eval documents the rules common
// to all three (hits == 0 reads, Requests == 0 refuses).

// fixedWindow implements FixedWindow (documented there).
func (l *Limit) fixedWindow(s *State, now, hits int64, r *Result) {
	p := int64(l.Period)
	w, elapsed := currentWindow(s, now, p)
	end := time.Duration(p - elapsed)
	*r = Result{Limit: l.Capacity(), ResetAfter: end}
	if l.Requests == 0 {
		r.RetryAfter = end
		return
	}
	count := int64(0)
	if s.Stamp == w {
		count = s.Count
	}
	after := satAdd(count, hits)
	r.Allowed = after <= l.Requests
	if hits > 0 {
		*s = State{Stamp: w, Count: after}
	}
	r.Remaining = max(0, l.Requests-after)
	if !r.Allowed {
		r.RetryAfter = end
	}
}

// currentWindow returns the index w of the window of now and the time
// elapsed since its start, except that a stored window that starts after
// now, by at most MaxClockStepBack, is the current one with no time elapsed:
// the clock stepped back, and now is taken as the stored window's start (see
// Eval).
func currentWindow(s *State, now, p int64) (w, elapsed int64) {
	w, elapsed = floorDiv(now, p)
	if s.Stamp > w && satAdd(satMul(satSub(s.Stamp, w)-1, p), p-elapsed) <= int64(MaxClockStepBack) {
		return s.Stamp, 0
	}
	return w, elapsed
}

// slidingWindow implements SlidingWindow (documented there), with
// weighted = ceil(prev*(P-elapsed)/P) computed exactly (128-bit).
func (l *Limit) slidingWindow(s *State, now, hits int64, r *Result) {
	p := int64(l.Period)
	w, elapsed := currentWindow(s, now, p)
	toEnd := p - elapsed
	*r = Result{Limit: l.Capacity()}
	if l.Requests == 0 {
		r.ResetAfter = time.Duration(toEnd)
		r.RetryAfter = r.ResetAfter
		return
	}
	var curr, prev int64
	switch s.Stamp {
	case w:
		curr, prev = s.Count, s.Prev
	case w - 1:
		prev = s.Count
	}
	weighted := mulDivCeil(prev, toEnd, p)
	after := satAdd(curr, hits)
	r.Allowed = satAdd(weighted, after) <= l.Requests
	if r.Allowed {
		curr = after
		if hits > 0 {
			*s = State{Stamp: w, Count: curr, Prev: prev}
		}
	}
	r.Remaining = max(0, l.Requests-satAdd(weighted, curr))
	switch {
	case curr > 0:
		r.ResetAfter = time.Duration(satAdd(toEnd, p))
	case prev > 0:
		r.ResetAfter = time.Duration(toEnd)
	}
	if !r.Allowed {
		r.RetryAfter = time.Duration(l.slidingRetry(curr, prev, hits, toEnd))
	}
}

// slidingRetry returns how long after now (toEnd before the end of the
// current window) hits first fit, given the current window's curr and the
// previous window's prev admitted hits.
func (l *Limit) slidingRetry(curr, prev, hits, toEnd int64) int64 {
	p, rq := int64(l.Period), l.Requests
	if hits > rq {
		return toEnd
	}
	if room := rq - curr - hits; room >= 0 {
		// Fits in this window once ceil(prev*(P-x)/P) <= room, x being the
		// offset into the window: x >= P - floor(room*P/prev). prev > 0 here,
		// or the request would have been admitted.
		d, _ := mulDiv(room, p, prev)
		return max(0, toEnd-min(d, p))
	}
	// Fits in the next window, where curr becomes the previous count, once
	// ceil(curr*(P-x)/P) <= R-hits. curr > 0 here because curr+hits > R >= hits.
	d, _ := mulDiv(rq-hits, p, curr)
	return satAdd(toEnd, p-min(d, p))
}

// tokenBucket implements TokenBucket (documented there).
func (l *Limit) tokenBucket(s *State, now, hits int64, r *Result) {
	p := int64(l.Period)
	*r = Result{Limit: l.Capacity()}
	if l.Requests == 0 {
		r.ResetAfter = time.Duration(p)
		r.RetryAfter = r.ResetAfter
		return
	}
	t := int64(l.Emission())
	b := l.Capacity()
	// Relative to now: need = max(TAT, now) - now + hits*T. The tolerance is
	// capped below MaxInt64, so a saturated need is always refused and an
	// admitted TAT stays representable.
	tolerance := min(satMul(b, t), MaxTolerance)
	backlog := max(satSub(s.Stamp, now), 0)
	need := satAdd(backlog, satMul(hits, t))
	r.Allowed = need <= tolerance
	if r.Allowed {
		backlog = need
		if hits > 0 {
			*s = State{Stamp: satAdd(now, need)}
		}
	} else {
		// need may have saturated: compute backlog + hits*T - tolerance exactly.
		r.RetryAfter = time.Duration(mulAddSub(hits, t, backlog, tolerance))
	}
	r.ResetAfter = time.Duration(backlog)
	if backlog < tolerance {
		r.Remaining = min((tolerance-backlog)/t, b)
	}
}
