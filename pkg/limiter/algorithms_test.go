package limiter

import (
	"math"
	"testing"
	"time"
)

// t0 is the fake clock's origin: a UTC midnight, so aligned to every
// second, minute, hour and day window counted from the Unix epoch.
var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

const ns = time.Nanosecond

// step is one call in a scripted sequence against a single counter.
type step struct {
	at   time.Duration // offset from t0
	hits int64
	want Result
}

func ok(limit, remaining int64, reset time.Duration) Result {
	return Result{Allowed: true, Limit: limit, Remaining: remaining, ResetAfter: reset}
}

func refused(limit, remaining int64, reset, retry time.Duration) Result {
	return Result{Limit: limit, Remaining: remaining, ResetAfter: reset, RetryAfter: retry}
}

func TestApplySequences(t *testing.T) {
	s, m := time.Second, time.Minute
	tests := []struct {
		name  string
		limit Limit
		steps []step
	}{
		{
			name:  "fixed window counts refused hits and resets at the minute",
			limit: Limit{Requests: 3, Period: m},
			steps: []step{
				{at: 0, hits: 1, want: ok(3, 2, 60*s)},
				{at: 10 * s, hits: 1, want: ok(3, 1, 50*s)},
				{at: 20 * s, hits: 1, want: ok(3, 0, 40*s)},
				{at: 30 * s, hits: 1, want: refused(3, 0, 30*s, 30*s)},
				// count is 4 now: even a read is over the limit.
				{at: 30 * s, hits: 0, want: refused(3, 0, 30*s, 30*s)},
				{at: m - ns, hits: 1, want: refused(3, 0, ns, ns)},
				{at: m, hits: 1, want: ok(3, 2, 60*s)},
				{at: m, hits: 0, want: ok(3, 2, 60*s)},
			},
		},
		{
			name:  "fixed window is aligned to the epoch, not to the first hit",
			limit: Limit{Requests: 2, Period: m},
			steps: []step{
				{at: 45 * s, hits: 2, want: ok(2, 0, 15*s)},
				{at: 59 * s, hits: 1, want: refused(2, 0, s, s)},
				{at: 60 * s, hits: 2, want: ok(2, 0, 60*s)},
			},
		},
		{
			name:  "fixed window hits_addend",
			limit: Limit{Requests: 10, Period: s},
			steps: []step{
				{at: 0, hits: 4, want: ok(10, 6, s)},
				{at: 0, hits: 7, want: refused(10, 0, s, s)},
				{at: 500 * time.Millisecond, hits: 0, want: refused(10, 0, 500*time.Millisecond, 500*time.Millisecond)},
				{at: s, hits: 10, want: ok(10, 0, s)},
				{at: s, hits: 0, want: ok(10, 0, s)},
				{at: 2 * s, hits: 11, want: refused(10, 0, s, s)},
			},
		},
		{
			name:  "fixed window requests 0 refuses everything",
			limit: Limit{Requests: 0, Period: m},
			steps: []step{
				{at: 15 * s, hits: 1, want: refused(0, 0, 45*s, 45*s)},
				{at: 15 * s, hits: 0, want: refused(0, 0, 45*s, 45*s)},
			},
		},
		{
			name:  "sliding window weights the previous window",
			limit: Limit{Requests: 10, Period: m, Algorithm: SlidingWindow},
			steps: []step{
				{at: 0, hits: 10, want: ok(10, 0, 120*s)},
				// Refused hits are not counted. Next window, prev=10: fits once
				// ceil(10*(60s-x)/60s) <= 9, x >= 6s, i.e. at 66s.
				{at: 30 * s, hits: 1, want: refused(10, 0, 90*s, 36*s)},
				{at: 66*s - ns, hits: 1, want: refused(10, 0, 60*s-6*s+ns, ns)},
				{at: 60 * s, hits: 0, want: ok(10, 0, 60*s)},
				// Halfway through: weighted = 5, so 5 more fit.
				{at: 90 * s, hits: 5, want: ok(10, 0, 90*s)},
				// ceil(10*(60s-x)/60s) <= 4 from x = 36s.
				{at: 90 * s, hits: 1, want: refused(10, 0, 90*s, 6*s)},
				{at: 96 * s, hits: 1, want: ok(10, 0, 84*s)},
				// Two windows later everything is forgotten.
				{at: 180 * s, hits: 1, want: ok(10, 9, 120*s)},
			},
		},
		{
			name:  "sliding window rounds the weighted count up",
			limit: Limit{Requests: 3, Period: s, Algorithm: SlidingWindow},
			steps: []step{
				{at: 0, hits: 1, want: ok(3, 2, 2*s)},
				{at: s, hits: 0, want: ok(3, 2, s)},
				{at: 2*s - ns, hits: 2, want: ok(3, 0, s+ns)},
				// ceil(1*1ns/1s) = 1 still counts the previous hit.
				{at: 2*s - ns, hits: 1, want: refused(3, 0, s+ns, ns)},
				{at: 2 * s, hits: 1, want: ok(3, 0, 2*s)},
			},
		},
		{
			name:  "sliding window hits_addend larger than the limit never fits",
			limit: Limit{Requests: 5, Period: m, Algorithm: SlidingWindow},
			steps: []step{
				{at: 20 * s, hits: 6, want: refused(5, 5, 0, 40*s)},
				{at: 20 * s, hits: 5, want: ok(5, 0, 100*s)},
			},
		},
		{
			name:  "sliding window requests 0",
			limit: Limit{Requests: 0, Period: m, Algorithm: SlidingWindow},
			steps: []step{
				{at: 15 * s, hits: 1, want: refused(0, 0, 45*s, 45*s)},
			},
		},
		{
			name:  "token bucket burst then refill",
			limit: Limit{Requests: 10, Period: 10 * s, Burst: 5, Algorithm: TokenBucket},
			steps: []step{
				{at: 0, hits: 5, want: ok(5, 0, 5*s)},
				{at: 0, hits: 1, want: refused(5, 0, 5*s, s)},
				{at: s, hits: 1, want: ok(5, 0, 5*s)},
				{at: 3500 * time.Millisecond, hits: 0, want: ok(5, 2, 2500*time.Millisecond)},
				{at: 3500 * time.Millisecond, hits: 3, want: refused(5, 2, 2500*time.Millisecond, 500*time.Millisecond)},
				{at: 4 * s, hits: 3, want: ok(5, 0, 5*s)},
				{at: 100 * s, hits: 1, want: ok(5, 4, s)},
				{at: 100 * s, hits: 6, want: refused(5, 4, s, 2*s)},
			},
		},
		{
			name:  "token bucket without burst holds Requests; T rounds up",
			limit: Limit{Requests: 3, Period: s, Algorithm: TokenBucket},
			steps: []step{
				{at: 0, hits: 1, want: ok(3, 2, 333333334)},
				{at: 0, hits: 1, want: ok(3, 1, 666666668)},
				{at: 0, hits: 1, want: ok(3, 0, 1000000002)},
				{at: 0, hits: 1, want: refused(3, 0, 1000000002, 333333334)},
				{at: 333333333, hits: 1, want: refused(3, 0, 666666669, 1)},
				{at: 333333334, hits: 1, want: ok(3, 0, 1000000002)},
			},
		},
		{
			name:  "token bucket requests 0",
			limit: Limit{Requests: 0, Period: m, Algorithm: TokenBucket},
			steps: []step{
				{at: 15 * s, hits: 1, want: refused(0, 0, m, m)},
				{at: 15 * s, hits: 0, want: refused(0, 0, m, m)},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var st State
			for i, sp := range tc.steps {
				got := tc.limit.Apply(&st, t0.Add(sp.at), sp.hits)
				if got != sp.want {
					t.Errorf("step %d (at %v, hits %d): got %+v, want %+v", i, sp.at, sp.hits, got, sp.want)
				}
			}
		})
	}
}

func TestEvalDoesNotChangeStateOnReadsOrRefusals(t *testing.T) {
	now := t0.Add(1500 * time.Millisecond)
	tests := []struct {
		name  string
		limit Limit
		state State
		hits  int64
	}{
		{name: "fixed read", limit: Limit{Requests: 5, Period: time.Second}, state: State{Stamp: 123, Count: 3}, hits: 0},
		{name: "fixed requests 0", limit: Limit{Requests: 0, Period: time.Second}, hits: 1},
		{name: "sliding read", limit: Limit{Requests: 5, Period: time.Second, Algorithm: SlidingWindow}, state: State{Stamp: t0.Unix() + 1, Count: 2, Prev: 1}, hits: 0},
		{name: "sliding refused", limit: Limit{Requests: 5, Period: time.Second, Algorithm: SlidingWindow}, state: State{Stamp: t0.Unix() + 1, Count: 5}, hits: 1},
		{name: "bucket read", limit: Limit{Requests: 5, Period: time.Second, Algorithm: TokenBucket}, state: State{Stamp: now.UnixNano() + 1}, hits: 0},
		{name: "bucket refused", limit: Limit{Requests: 5, Period: time.Second, Algorithm: TokenBucket}, state: State{Stamp: now.UnixNano() + int64(time.Second)}, hits: 1},
		{name: "invalid period", limit: Limit{Requests: 5}, state: State{Stamp: 9}, hits: 1},
		{name: "negative hits", limit: Limit{Requests: 5, Period: time.Second}, state: State{Stamp: 9}, hits: -1},
		{name: "unknown algorithm", limit: Limit{Requests: 5, Period: time.Second, Algorithm: 9}, state: State{Stamp: 9}, hits: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, _ := tc.limit.Eval(tc.state, now, tc.hits)
			if got != tc.state {
				t.Errorf("got state %+v, want it unchanged %+v", got, tc.state)
			}
		})
	}
}

func TestEvalInvalidRefuses(t *testing.T) {
	for _, l := range []Limit{{Requests: 1}, {Requests: -1, Period: time.Second}, {Requests: 1, Period: time.Second, Algorithm: 7}} {
		_, r := l.Eval(State{}, t0, 1)
		if r.Allowed {
			t.Errorf("%v: got Allowed, want refused", l)
		}
	}
}

func TestExpiry(t *testing.T) {
	p := time.Minute
	w := t0.UnixNano() / int64(p)
	tests := []struct {
		name  string
		limit Limit
		state State
		want  time.Time
	}{
		{name: "fixed: end of the window", limit: Limit{Requests: 1, Period: p}, state: State{Stamp: w, Count: 1}, want: t0.Add(p)},
		{name: "sliding: end of the next window", limit: Limit{Requests: 1, Period: p, Algorithm: SlidingWindow}, state: State{Stamp: w, Count: 1}, want: t0.Add(2 * p)},
		{name: "bucket: the TAT", limit: Limit{Requests: 1, Period: p, Algorithm: TokenBucket}, state: State{Stamp: t0.UnixNano() + 5}, want: t0.Add(5)},
		{name: "absurd window saturates", limit: Limit{Requests: 1, Period: p}, state: State{Stamp: math.MaxInt64}, want: time.Unix(0, math.MaxInt64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.limit.Expiry(tc.state); !got.Equal(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestExpiredStateIsFresh checks the promise that lets stores drop state at
// Expiry: from then on, the stored state decides exactly like the zero State.
func TestExpiredStateIsFresh(t *testing.T) {
	limits := []Limit{
		{Requests: 3, Period: time.Second},
		{Requests: 3, Period: time.Second, Algorithm: SlidingWindow},
		{Requests: 3, Period: time.Second, Burst: 5, Algorithm: TokenBucket},
	}
	for _, l := range limits {
		var st State
		for i := range 4 {
			l.Apply(&st, t0.Add(time.Duration(i)*100*time.Millisecond), 1)
		}
		exp := l.Expiry(st)
		for _, at := range []time.Time{exp, exp.Add(time.Nanosecond), exp.Add(time.Hour)} {
			for hits := range int64(4) {
				gotS, got := l.Eval(st, at, hits)
				wantS, want := l.Eval(State{}, at, hits)
				// A read leaves each state as it was; otherwise both must
				// have moved to the same state.
				if got != want || (hits > 0 && gotS != wantS) {
					t.Errorf("%v at expiry%+v, hits %d: got %+v %+v, want %+v %+v", l, at.Sub(exp), hits, gotS, got, wantS, want)
				}
			}
		}
	}
}

func TestChangedAlgorithmReadsStaleStateAsFresh(t *testing.T) {
	fixed := Limit{Requests: 3, Period: time.Minute}
	bucket := Limit{Requests: 3, Period: time.Minute, Algorithm: TokenBucket}
	var st State
	fixed.Apply(&st, t0, 3)
	if got := bucket.Apply(&st, t0, 1); got.Remaining != 2 {
		t.Errorf("bucket after fixed: got remaining %d, want 2", got.Remaining)
	}
	if got := fixed.Apply(&st, t0, 1); got.Remaining != 2 {
		t.Errorf("fixed after bucket: got remaining %d, want 2", got.Remaining)
	}
}

func TestSaturatingArithmetic(t *testing.T) {
	tests := []struct {
		name      string
		got, want int64
	}{
		{name: "add overflow", got: satAdd(math.MaxInt64, 1), want: math.MaxInt64},
		{name: "add underflow", got: satAdd(math.MinInt64, -1), want: math.MinInt64},
		{name: "add", got: satAdd(-3, 5), want: 2},
		{name: "sub min", got: satSub(0, math.MinInt64), want: math.MaxInt64},
		{name: "sub min from negative", got: satSub(-1, math.MinInt64), want: math.MaxInt64},
		{name: "sub", got: satSub(3, 5), want: -2},
		{name: "mul overflow", got: satMul(math.MaxInt64/2, 3), want: math.MaxInt64},
		{name: "mul negative overflow", got: satMul(math.MinInt64/2, 3), want: math.MinInt64},
		{name: "mul -1 min", got: satMul(-1, math.MinInt64), want: math.MaxInt64},
		{name: "mul", got: satMul(-4, 5), want: -20},
		{name: "mulDivCeil exact", got: mulDivCeil(6, 10, 3), want: 20},
		{name: "mulDivCeil rounds up", got: mulDivCeil(1, 1, 3), want: 1},
		{name: "mulDivCeil 128-bit", got: mulDivCeil(math.MaxInt64, math.MaxInt64, math.MaxInt64), want: math.MaxInt64},
		{name: "mulDivCeil saturates", got: mulDivCeil(math.MaxInt64, 4, 2), want: math.MaxInt64},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %d, want %d", tc.name, tc.got, tc.want)
		}
	}
}

// TestClockStepBack: a stored window at most MaxClockStepBack after now keeps
// its count, with now taken as its start; one further ahead (the index of a
// shorter period after a config change) is stale as before.
func TestClockStepBack(t *testing.T) {
	p := time.Minute
	for _, a := range []Algorithm{FixedWindow, SlidingWindow} {
		l := Limit{Requests: 3, Period: p, Algorithm: a}
		s, r := l.Eval(State{}, t0, 3)
		if !r.Allowed {
			t.Fatalf("%s: first 3 hits refused: %+v", a, r)
		}
		_, r = l.Eval(s, t0.Add(-30*time.Second), 1)
		if r.Allowed || r.ResetAfter <= 0 || r.RetryAfter <= 0 {
			t.Errorf("%s: 30s back: got %+v, want refused", a, r)
		}
		far := State{Stamp: s.Stamp + int64(MaxClockStepBack/p) + 1, Count: 3}
		if _, r = l.Eval(far, t0, 1); !r.Allowed {
			t.Errorf("%s: a window more than MaxClockStepBack ahead: got %+v, want it read as stale", a, r)
		}
		edge := State{Stamp: s.Stamp + int64(MaxClockStepBack/p), Count: 3}
		if _, r = l.Eval(edge, t0, 1); r.Allowed {
			t.Errorf("%s: a window MaxClockStepBack ahead: got %+v, want refused", a, r)
		}
	}
}

// TestTokenBucketHugeTolerance: a tolerance B*T beyond 2^62 ns (10/year,
// burst 5000: about 500 years) is capped at 2^62 ns, so the bucket still
// limits (it saturated at MaxInt64 and then admitted everything) and its
// state expires at a finite TAT.
func TestTokenBucketHugeTolerance(t *testing.T) {
	year := 365 * 24 * time.Hour
	l := Limit{Requests: 10, Period: year, Burst: 5000, Algorithm: TokenBucket}
	emission := int64(year / 10)
	wantAdmitted := int64(1<<62) / emission
	var s State
	admitted := int64(0)
	for range 20000 {
		if l.Apply(&s, t0, 1).Allowed {
			admitted++
		}
	}
	if admitted != wantAdmitted {
		t.Errorf("admitted %d of 20000, want %d (the tolerance capped at 2^62 ns)", admitted, wantAdmitted)
	}
	if want := t0.Add(time.Duration(admitted * emission)); !l.Expiry(s).Equal(want) {
		t.Errorf("Expiry %v, want the TAT %v", l.Expiry(s), want)
	}
	r := l.Apply(&s, t0, 0)
	if r.Allowed != true || r.Remaining != 0 || r.ResetAfter != time.Duration(admitted*emission) {
		t.Errorf("read after the burst: got %+v", r)
	}
	// Hits beyond the cap in one request are refused, not saturated.
	var fresh State
	if r := l.Apply(&fresh, t0, wantAdmitted+1); r.Allowed || fresh != (State{}) {
		t.Errorf("%d hits at once: got %+v, state %+v, want refused", wantAdmitted+1, r, fresh)
	}
	if r := l.Apply(&fresh, t0, wantAdmitted); !r.Allowed {
		t.Errorf("%d hits at once: got %+v, want admitted", wantAdmitted, r)
	}
}
