package limiter

import (
	"errors"
	"testing"
	"time"
)

func TestCheckRequests(t *testing.T) {
	valid := Limit{Requests: 1, Period: time.Second}
	tests := []struct {
		name    string
		reqs    []Request
		nres    int
		wantErr error
	}{
		{name: "empty", nres: 0},
		{name: "valid", reqs: []Request{{Key: "a", Limit: valid, Hits: 1}, {Key: "b", Limit: valid}}, nres: 2},
		{name: "longer results are fine", reqs: []Request{{Key: "a", Limit: valid, Hits: 1}}, nres: 3},
		{name: "short results", reqs: []Request{{Key: "a", Limit: valid, Hits: 1}}, nres: 0, wantErr: ErrInvalidRequest},
		{name: "negative hits", reqs: []Request{{Key: "a", Limit: valid, Hits: -1}}, nres: 1, wantErr: ErrInvalidRequest},
		{name: "zero period", reqs: []Request{{Key: "a", Limit: Limit{Requests: 1}, Hits: 1}}, nres: 1, wantErr: ErrInvalidLimit},
		{name: "unknown algorithm", reqs: []Request{{Key: "a", Limit: Limit{Requests: 1, Period: time.Second, Algorithm: 5}}}, nres: 1, wantErr: ErrUnknownAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRequests(tc.reqs, make([]Result, tc.nres))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Errorf("got error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestCheckRequestsDoesNotAllocate(t *testing.T) {
	reqs := []Request{{Key: "a", Limit: Limit{Requests: 1, Period: time.Second}, Hits: 1}}
	res := make([]Result, 1)
	if n := testing.AllocsPerRun(100, func() { _ = CheckRequests(reqs, res) }); n != 0 {
		t.Errorf("got %v allocs, want 0", n)
	}
}

func TestApplyAll(t *testing.T) {
	fixed5 := Limit{Requests: 5, Period: time.Minute}
	fixed1 := Limit{Requests: 1, Period: time.Minute}
	w := t0.UnixNano() / int64(time.Minute)
	now := t0.Add(20 * time.Second)
	tests := []struct {
		name       string
		mode       Mode
		reqs       []Request
		wantRes    []Result
		wantStates []State // one per request
	}{
		{
			name:       "count all: same key twice, the second is refused and counted",
			mode:       CountAll,
			reqs:       []Request{{Key: "k", Limit: fixed5, Hits: 3}, {Key: "k", Limit: fixed5, Hits: 3}},
			wantRes:    []Result{ok(5, 2, 40*time.Second), refused(5, 0, 40*time.Second, 40*time.Second)},
			wantStates: []State{{Stamp: w, Count: 6}, {Stamp: w, Count: 6}},
		},
		{
			name: "count if all allowed: same key twice, nothing counted",
			mode: CountIfAllAllowed,
			reqs: []Request{{Key: "k", Limit: fixed5, Hits: 3}, {Key: "k", Limit: fixed5, Hits: 3}},
			// Remaining and ResetAfter describe the unchanged counter.
			wantRes:    []Result{ok(5, 5, 40*time.Second), refused(5, 5, 40*time.Second, 40*time.Second)},
			wantStates: []State{{}, {}},
		},
		{
			name:       "count all: other key counted although one is refused",
			mode:       CountAll,
			reqs:       []Request{{Key: "a", Limit: fixed5, Hits: 1}, {Key: "b", Limit: fixed1, Hits: 2}},
			wantRes:    []Result{ok(5, 4, 40*time.Second), refused(1, 0, 40*time.Second, 40*time.Second)},
			wantStates: []State{{Stamp: w, Count: 1}, {Stamp: w, Count: 2}},
		},
		{
			name:       "count if all allowed: refused call counts nothing",
			mode:       CountIfAllAllowed,
			reqs:       []Request{{Key: "a", Limit: fixed5, Hits: 1}, {Key: "b", Limit: fixed1, Hits: 2}},
			wantRes:    []Result{ok(5, 5, 40*time.Second), refused(1, 1, 40*time.Second, 40*time.Second)},
			wantStates: []State{{}, {}},
		},
		{
			name:       "count if all allowed: admitted call counts everything",
			mode:       CountIfAllAllowed,
			reqs:       []Request{{Key: "a", Limit: fixed5, Hits: 1}, {Key: "b", Limit: fixed1, Hits: 1}, {Key: "a", Limit: fixed5, Hits: 2}},
			wantRes:    []Result{ok(5, 4, 40*time.Second), ok(1, 0, 40*time.Second), ok(5, 2, 40*time.Second)},
			wantStates: []State{{Stamp: w, Count: 3}, {Stamp: w, Count: 1}, {Stamp: w, Count: 3}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			states := make([]State, len(tc.reqs))
			res := make([]Result, len(tc.reqs))
			ApplyAll(tc.mode, now, tc.reqs, states, res)
			for i := range res {
				if res[i] != tc.wantRes[i] {
					t.Errorf("result %d: got %+v, want %+v", i, res[i], tc.wantRes[i])
				}
			}
			for i := range states {
				if states[i] != tc.wantStates[i] {
					t.Errorf("state %d: got %+v, want %+v", i, states[i], tc.wantStates[i])
				}
			}
		})
	}
}

func TestApplyAllManyRequestsRollsBack(t *testing.T) {
	// More requests than ApplyAll keeps on its stack, one key repeated,
	// the last one refused.
	l := Limit{Requests: 100, Period: time.Second, Algorithm: SlidingWindow}
	n := 25 // hits 5 each: the 21st is refused
	if n <= stackRequests {
		t.Fatalf("n %d must exceed stackRequests %d", n, stackRequests)
	}
	reqs := make([]Request, n)
	for i := range reqs {
		reqs[i] = Request{Key: "k", Limit: l, Hits: 5}
	}
	states := make([]State, n)
	res := make([]Result, n)
	ApplyAll(CountIfAllAllowed, t0, reqs, states, res)
	for i, st := range states {
		if st != (State{}) {
			t.Errorf("state %d: got %+v, want it rolled back to zero", i, st)
		}
	}
	for i, r := range res {
		if want := i < 20; r.Allowed != want {
			t.Errorf("result %d: got Allowed %v, want %v", i, r.Allowed, want)
		}
		if r.Remaining != 100 {
			t.Errorf("result %d: got Remaining %d, want 100", i, r.Remaining)
		}
	}
}

func TestApplyAllReadsOnlyTheFirstStateOfAKey(t *testing.T) {
	l := Limit{Requests: 5, Period: time.Minute}
	w := t0.UnixNano() / int64(time.Minute)
	reqs := []Request{{Key: "k", Limit: l, Hits: 1}, {Key: "other", Limit: l, Hits: 1}, {Key: "k", Limit: l, Hits: 1}}
	states := []State{{Stamp: w, Count: 2}, {}, {Stamp: w, Count: 4}}
	res := make([]Result, len(reqs))
	ApplyAll(CountAll, t0, reqs, states, res)
	if want := (State{Stamp: w, Count: 4}); states[0] != want || states[2] != want {
		t.Errorf("got states %+v and %+v, want both %+v", states[0], states[2], want)
	}
	if res[2].Remaining != 1 {
		t.Errorf("got Remaining %d, want 1", res[2].Remaining)
	}
}

func TestApplyAllDoesNotAllocate(t *testing.T) {
	l := Limit{Requests: 1, Period: time.Second}
	reqs := []Request{{Key: "a", Limit: l, Hits: 1}, {Key: "b", Limit: l, Hits: 2}}
	states := make([]State, 2)
	res := make([]Result, 2)
	for _, mode := range []Mode{CountAll, CountIfAllAllowed} {
		if n := testing.AllocsPerRun(100, func() { ApplyAll(mode, t0, reqs, states, res) }); n != 0 {
			t.Errorf("mode %d: got %v allocs, want 0", mode, n)
		}
	}
}
