package limiter

import "time"

// State is the stored state of one counter (one Key). It has the same three
// fields for every algorithm so that a store keeps one fixed-size value per
// key; the zero State is a counter that has never been hit. What the fields
// mean depends on the Limit's algorithm:
//
//   - FixedWindow: Stamp is the window index floor(now_unix_ns / Period);
//     Count is the number of hits counted in that window, refused hits
//     included. Prev is unused (zero).
//   - SlidingWindow: Stamp is the index of the current window as above;
//     Count is the number of admitted hits in window Stamp, and Prev the
//     number of admitted hits in window Stamp-1.
//   - TokenBucket: Stamp is the theoretical arrival time (TAT) in Unix
//     nanoseconds; Count and Prev are unused (zero).
//
// A state written under one Limit stays meaningful when the configuration
// changes the limit of its key: a changed Requests or Burst applies to the
// stored counts; a changed Period or Algorithm makes the stored window index
// (or TAT) stale, which reads as a fresh counter for the window algorithms and
// as a full bucket for the token bucket (a window index read as a TAT is long
// past). A window index that starts after now by at most MaxClockStepBack is
// not stale but current (a clock stepped back); another period's index
// practically never falls there.
type State struct {
	Stamp int64
	Count int64
	Prev  int64
}

// Eval is the pure decision function: it returns the state after applying
// hits to s at time now under l, and the Result. Neither s nor anything else
// is modified. Apply is the in-place form.
//
// Common rules, for every algorithm (R = Requests, P = Period):
//   - hits == 0 is a read: the Result describes the counter, Allowed says
//     whether zero more hits fit (false only when the counter is already over
//     its limit, e.g. after refused fixed-window hits or a lowered limit), and
//     the returned state equals s.
//   - R == 0 refuses everything and never changes the state. Remaining is 0,
//     and ResetAfter = RetryAfter = the time to the end of the current fixed
//     window (P for the token bucket).
//   - Result.Limit is l.Capacity(); RetryAfter is zero when Allowed.
//   - A request with hits > capacity is never admitted.
//   - A clock that steps back does not reset a window: a stored window that
//     starts after now (by at most MaxClockStepBack) is the current one, and
//     now is taken as its start (see MaxClockStepBack).
//
// The algorithms are documented on FixedWindow, SlidingWindow and
// TokenBucket. All arithmetic is in int64 nanoseconds of Unix time, with
// 128-bit intermediates where products can overflow and saturation instead
// of wrap-around. Eval never panics: an invalid Limit (see
// Validate) or negative hits refuses without changing the state; stores
// reject such requests beforehand with CheckRequests.
func (l Limit) Eval(s State, now time.Time, hits int64) (State, Result) {
	var r Result
	l.apply(&s, now.UnixNano(), hits, &r)
	return s, r
}

// Apply applies hits to *s at time now under l and returns the Result; *s is
// updated to the new state. It is Eval in place; see Eval for the rules.
func (l Limit) Apply(s *State, now time.Time, hits int64) Result {
	var r Result
	l.apply(s, now.UnixNano(), hits, &r)
	return r
}

// apply is Eval working in place, on Unix nanoseconds: it sets every field
// of *r and updates *s. Pointers rather than values keep the hot path free
// of large copies.
func (l *Limit) apply(s *State, now, hits int64, r *Result) {
	if l.Period <= 0 || l.Requests < 0 || l.Burst < 0 || hits < 0 {
		*r = Result{Limit: l.Capacity()}
		return
	}
	switch l.Algorithm {
	case FixedWindow:
		l.fixedWindow(s, now, hits, r)
	case SlidingWindow:
		l.slidingWindow(s, now, hits, r)
	case TokenBucket:
		l.tokenBucket(s, now, hits, r)
	default:
		*r = Result{Limit: l.Capacity()}
	}
}

// Expiry returns the time from which s, written under l, is equivalent to the
// zero State and can be dropped: the end of window Stamp for FixedWindow, the
// end of window Stamp+1 for SlidingWindow (the window in which Count becomes
// the previous count), and the TAT for TokenBucket. Memory stores sweep
// expired states; Redis sets it as the key's expiry.
func (l Limit) Expiry(s State) time.Time {
	if l.Period <= 0 {
		return time.Unix(0, 0)
	}
	p := int64(l.Period)
	var ns int64
	switch l.Algorithm {
	case SlidingWindow:
		ns = satMul(satAdd(s.Stamp, 2), p)
	case TokenBucket:
		ns = s.Stamp
	default:
		ns = satMul(satAdd(s.Stamp, 1), p)
	}
	return time.Unix(0, ns)
}
