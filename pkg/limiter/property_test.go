package limiter

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// event is one call of a random sequence against a single counter.
type event struct {
	at   time.Time
	hits int64
}

// randomEvents returns n calls with non-decreasing times starting at a
// random offset from t0: mostly short gaps (many calls per window), some
// long ones (crossing windows), and hits mostly 1, sometimes 0 or several.
func randomEvents(rng *rand.Rand, n int, p time.Duration, maxHits int64) []event {
	at := t0.Add(time.Duration(rng.Int64N(int64(p))))
	evs := make([]event, n)
	for i := range evs {
		switch rng.IntN(10) {
		case 0:
			at = at.Add(time.Duration(rng.Int64N(2 * int64(p))))
		case 1, 2:
			// same instant
		default:
			at = at.Add(time.Duration(rng.Int64N(int64(p) / 20)))
		}
		hits := int64(1)
		switch rng.IntN(6) {
		case 0:
			hits = 0
		case 1:
			hits = rng.Int64N(maxHits + 1)
		}
		evs[i] = event{at: at, hits: hits}
	}
	return evs
}

func randomLimit(rng *rand.Rand, alg Algorithm) Limit {
	periods := []time.Duration{time.Second, time.Minute, 7 * time.Millisecond, 3*time.Second + 1}
	l := Limit{
		Requests:  rng.Int64N(30),
		Period:    periods[rng.IntN(len(periods))],
		Algorithm: alg,
	}
	if alg == TokenBucket && rng.IntN(2) == 0 {
		l.Burst = 1 + rng.Int64N(40)
	}
	return l
}

// TestWindowsNeverAdmitMoreThanTheLimit: for random sequences of calls, the
// hits admitted in any epoch-aligned window never exceed Requests, for both
// window algorithms. The fixed window is also checked against a direct model
// (a map of per-window counts that include refused hits).
func TestWindowsNeverAdmitMoreThanTheLimit(t *testing.T) {
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow} {
		for seed := range uint64(200) {
			rng := rand.New(rand.NewPCG(seed, uint64(alg)))
			l := randomLimit(rng, alg)
			p := int64(l.Period)
			admitted := map[int64]int64{}
			counted := map[int64]int64{} // fixed-window model
			var st State
			for i, ev := range randomEvents(rng, 400, l.Period, l.Requests+3) {
				r := l.Apply(&st, ev.at, ev.hits)
				w, _ := floorDiv(ev.at.UnixNano(), p)
				if r.Allowed {
					admitted[w] += ev.hits
				}
				if alg == FixedWindow {
					want := l.Requests > 0 && counted[w]+ev.hits <= l.Requests
					if l.Requests > 0 {
						counted[w] += ev.hits
					}
					if r.Allowed != want {
						t.Fatalf("%s seed %d call %d: got Allowed %v, want %v (count %d, hits %d)", l, seed, i, r.Allowed, want, counted[w]-ev.hits, ev.hits)
					}
				}
				if admitted[w] > l.Requests {
					t.Fatalf("%s seed %d call %d: window %d admitted %d hits, want at most %d", l, seed, i, w, admitted[w], l.Requests)
				}
			}
		}
	}
}

// TestTokenBucketNeverAdmitsMoreThanBurstPlusRate: over every span [t_i, t_j]
// of a random sequence, the admitted hits are at most
// Burst + (t_j - t_i) * Requests / Period.
func TestTokenBucketNeverAdmitsMoreThanBurstPlusRate(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 99))
		l := randomLimit(rng, TokenBucket)
		var st State
		evs := randomEvents(rng, 300, l.Period, l.Capacity()+3)
		admitted := make([]int64, len(evs))
		for i, ev := range evs {
			if r := l.Apply(&st, ev.at, ev.hits); r.Allowed {
				admitted[i] = ev.hits
			}
		}
		for i := range evs {
			var sum int64
			for j := i; j < len(evs); j++ {
				sum += admitted[j]
				span := int64(evs[j].at.Sub(evs[i].at))
				// sum <= B + span*R/P, multiplied out (values stay far below 2^63).
				if sum*int64(l.Period) > l.Capacity()*int64(l.Period)+span*l.Requests {
					t.Fatalf("%s seed %d: calls %d..%d admitted %d hits in %v, want at most %d + %v*rate", l, seed, i, j, sum, time.Duration(span), l.Capacity(), time.Duration(span))
				}
			}
		}
	}
}

// TestResultTimesAreExact checks RetryAfter and ResetAfter against the
// algorithms themselves, for random states:
//   - a refused request (that could ever fit) fits at now+RetryAfter and not
//     1ns earlier, if nothing else is counted meanwhile;
//   - at now+ResetAfter the counter reads as full (Remaining == capacity), and
//     for sliding window and token bucket 1ns earlier it does not;
//   - an admitted request has RetryAfter 0; Remaining is within [0, capacity].
func TestResultTimesAreExact(t *testing.T) {
	for _, alg := range []Algorithm{FixedWindow, SlidingWindow, TokenBucket} {
		for seed := range uint64(100) {
			rng := rand.New(rand.NewPCG(seed, 7+uint64(alg)))
			l := randomLimit(rng, alg)
			l.Requests++ // R == 0 has its own rules, tested in the tables
			var st State
			for i, ev := range randomEvents(rng, 300, l.Period, l.Capacity()+2) {
				before := st
				r := l.Apply(&st, ev.at, ev.hits)
				where := fmt.Sprintf("%s seed %d call %d (hits %d, state %+v)", l, seed, i, ev.hits, before)
				if r.Remaining < 0 || r.Remaining > l.Capacity() {
					t.Fatalf("%s: got Remaining %d, want within [0, %d]", where, r.Remaining, l.Capacity())
				}
				if r.Allowed {
					if r.RetryAfter != 0 {
						t.Fatalf("%s: admitted with RetryAfter %v, want 0", where, r.RetryAfter)
					}
				} else if ev.hits <= l.Capacity() {
					if r.RetryAfter <= 0 {
						t.Fatalf("%s: refused with RetryAfter %v, want > 0", where, r.RetryAfter)
					}
					if _, r2 := l.Eval(st, ev.at.Add(r.RetryAfter), ev.hits); !r2.Allowed {
						t.Fatalf("%s: refused again after RetryAfter %v: %+v", where, r.RetryAfter, r2)
					}
					if _, r2 := l.Eval(st, ev.at.Add(r.RetryAfter-1), ev.hits); r2.Allowed {
						t.Fatalf("%s: admitted 1ns before RetryAfter %v", where, r.RetryAfter)
					}
				}
				if _, r2 := l.Eval(st, ev.at.Add(r.ResetAfter), 0); r2.Remaining != l.Capacity() {
					t.Fatalf("%s: after ResetAfter %v got Remaining %d, want %d", where, r.ResetAfter, r2.Remaining, l.Capacity())
				}
				if alg != FixedWindow && r.ResetAfter > 0 {
					if _, r2 := l.Eval(st, ev.at.Add(r.ResetAfter-1), 0); r2.Remaining == l.Capacity() {
						t.Fatalf("%s: full 1ns before ResetAfter %v", where, r.ResetAfter)
					}
				}
			}
		}
	}
}
