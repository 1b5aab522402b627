package limiter

import (
	"testing"
	"time"
)

// FuzzEval checks that Eval never panics and keeps its invariants for any
// valid limit, any state a store could hold (non-negative counts) and any
// time: Remaining within [0, capacity], non-negative durations, RetryAfter
// zero exactly when admitted (for requests that can fit), and reads and
// refusals (except the fixed window's) leaving the state unchanged.
func FuzzEval(f *testing.F) {
	f.Add(int64(10), int64(time.Minute), int64(0), uint8(0), int64(0), int64(0), int64(0), t0.UnixNano(), int64(1))
	f.Add(int64(3), int64(time.Second), int64(0), uint8(1), t0.Unix(), int64(2), int64(3), t0.UnixNano()+1, int64(2))
	f.Add(int64(3), int64(time.Second), int64(5), uint8(2), t0.UnixNano()+5e8, int64(0), int64(0), t0.UnixNano(), int64(4))
	f.Add(int64(0), int64(time.Hour), int64(0), uint8(2), int64(0), int64(0), int64(0), int64(-1), int64(0))
	f.Add(int64(1<<62), int64(1<<62), int64(1<<62), uint8(2), int64(1<<62), int64(0), int64(0), int64(1<<62), int64(1<<62))
	f.Fuzz(func(t *testing.T, requests, period, burst int64, alg uint8, stamp, count, prev, now, hits int64) {
		l := Limit{Requests: requests, Period: time.Duration(period), Burst: burst, Algorithm: Algorithm(alg % 3)}
		if l.Algorithm != TokenBucket {
			l.Burst = 0
		}
		s := State{Stamp: stamp, Count: count, Prev: prev}
		got, r := l.Eval(s, time.Unix(0, now), hits) // must not panic, whatever the input
		if l.Validate() != nil || hits < 0 || count < 0 || prev < 0 {
			return
		}
		if l.Algorithm == TokenBucket {
			s.Count, s.Prev = 0, 0
			got, r = l.Eval(s, time.Unix(0, now), hits)
		}
		if r.Remaining < 0 || r.Remaining > l.Capacity() {
			t.Errorf("%v %+v hits %d: got Remaining %d, want within [0, %d]", l, s, hits, r.Remaining, l.Capacity())
		}
		if r.ResetAfter < 0 || r.RetryAfter < 0 {
			t.Errorf("%v %+v hits %d: got negative durations %+v", l, s, hits, r)
		}
		if r.Allowed && r.RetryAfter != 0 {
			t.Errorf("%v %+v hits %d: admitted with RetryAfter %v", l, s, hits, r.RetryAfter)
		}
		if r.Limit != l.Capacity() {
			t.Errorf("got Limit %d, want %d", r.Limit, l.Capacity())
		}
		if (hits == 0 || (!r.Allowed && l.Algorithm != FixedWindow) || l.Requests == 0) && got != s {
			t.Errorf("%v %+v hits %d: state changed to %+v", l, s, hits, got)
		}
	})
}
