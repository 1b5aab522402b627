// Package limitertest is the conformance suite that every limiter.Store
// passes: it checks a store against the algorithm semantics documented in
// package limiter, with a fake clock when the store accepts one and with the
// real clock otherwise.
package limitertest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Clock is the time source of a store under test that the suite may move.
type Clock interface {
	// Now returns the time the store reads.
	Now() time.Time
	// Advance moves the clock forward by d.
	Advance(d time.Duration)
}

// FakeClock is a Clock for stores that take a Now function (pass
// clock.Now). It is safe for concurrent use. The zero value is not usable;
// call NewFakeClock.
type FakeClock struct{ ns atomic.Int64 }

// NewFakeClock returns a FakeClock set to t.
func NewFakeClock(t time.Time) *FakeClock {
	c := &FakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time.
func (c *FakeClock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Advance moves the clock forward by d.
func (c *FakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Run runs the conformance suite against the store that newStore returns.
//
// Every subtest calls newStore, which returns the store and the Clock it
// reads, or a nil Clock when the store reads the real time (Redis reads the
// server's TIME). newStore registers any cleanup with t.Cleanup. The suite
// uses keys unique to each run and subtest, so newStore may return one
// shared store (e.g. one Redis server per test binary), and subtests do not
// run in parallel, so a shared Clock is fine too.
//
// With a nil Clock the suite only runs subtests that hold with any clock:
// they use a period of about 1000 hours chosen so that no window boundary
// falls within 10 minutes of now, and assert counts. With a Clock it also
// checks window edges, refill and the exact durations in results.
//
// The store must also return an error wrapping limiter.ErrInvalidLimit for
// an invalid limit (limiter.CheckRequests does this) and an error for a
// context that is already cancelled.
func Run(t *testing.T, newStore func(t *testing.T) (limiter.Store, Clock)) {
	t.Helper()
	tests := []struct {
		name      string
		fakeClock bool
		run       func(t *testing.T, h *harness)
	}{
		{name: "FixedWindowAdmitsRequestsThenRefuses", run: testFixedWindowCounts},
		{name: "FixedWindowCountsRefusedHits", run: testFixedWindowRefusedHits},
		{name: "SlidingWindowDoesNotCountRefusedHits", run: testSlidingWindowRefusedHits},
		{name: "TokenBucketBurst", run: testTokenBucketBurst},
		{name: "TokenBucketDefaultBurstIsRequests", run: testTokenBucketDefaultBurst},
		{name: "ZeroHitsOnlyReads", run: testZeroHits},
		{name: "ZeroRequestsRefusesAndCountsNothing", run: testZeroRequests},
		{name: "CountAllCountsAdmittedRequests", run: testCountAll},
		{name: "CountIfAllAllowedCountsNothingWhenRefused", run: testCountIfAllAllowedRefused},
		{name: "CountIfAllAllowedCountsAllWhenAdmitted", run: testCountIfAllAllowedAdmitted},
		{name: "CountIfAllAllowedShadowDoesNotVeto", run: testCountIfAllAllowedShadow},
		{name: "SameKeyTwiceInOneCall", run: testSameKeyTwice},
		{name: "AlgorithmsMixedInOneCall", run: testMixedAlgorithms},
		{name: "KeysAreCopied", run: testKeysAreCopied},
		{name: "DistinctKeysAreIndependent", run: testDistinctKeys},
		{name: "ConcurrentTakesAdmitExactlyTheLimit", run: testConcurrentSameKey},
		{name: "ConcurrentMultiKeyCallsAreAtomic", run: testConcurrentMultiKey},
		{name: "EmptyCall", run: testEmptyCall},
		{name: "Errors", run: testErrors},
		{name: "FixedWindowEdges", fakeClock: true, run: testFixedWindowEdges},
		{name: "SlidingWindowWeightsThePreviousWindow", fakeClock: true, run: testSlidingWindowWeights},
		{name: "TokenBucketRefill", fakeClock: true, run: testTokenBucketRefill},
		{name: "ExpiredStateIsForgotten", fakeClock: true, run: testExpiry},
		{name: "ClockSteppedBackDoesNotReset", fakeClock: true, run: testClockStepBack},
	}
	// Subtests that move time need a settable clock: a store on the real
	// clock runs the others only (its fake-clock variant runs them all).
	_, probe := newStore(t)
	realClock := probe == nil
	if realClock {
		t.Log("real clock: the subtests that move time run in the fake-clock variant")
	}
	for _, tc := range tests {
		if tc.fakeClock && realClock {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			store, clock := newStore(t)
			tc.run(t, &harness{store: store, clock: clock, prefix: fmt.Sprintf("limitertest/%016x/%s/", rand.Uint64(), t.Name())})
		})
	}
}

// harness is what a subtest works with.
type harness struct {
	store  limiter.Store
	clock  Clock // nil: real time
	prefix string
}

// key returns a key unique to this run and subtest.
func (h *harness) key(name string) string { return h.prefix + name }

func (h *harness) now() time.Time {
	if h.clock != nil {
		return h.clock.Now()
	}
	return time.Now()
}

// longPeriod returns a period of about 1000 hours whose current window,
// aligned to the epoch, neither started nor ends within 10 minutes of now,
// so real-time subtests never see a window change or noticeable refill.
func (h *harness) longPeriod() time.Duration {
	const margin = 10 * time.Minute
	now := h.now().UnixNano()
	for k := range 24 {
		p := 1000*time.Hour + time.Duration(k)*time.Hour + 7*time.Second
		elapsed := now % int64(p)
		if elapsed > int64(margin) && int64(p)-elapsed > int64(margin) {
			return p
		}
	}
	return 1000 * time.Hour // unreachable: the candidates' offsets differ by an hour
}

// alignTo advances the fake clock to offset into the next window of p.
func (h *harness) alignTo(p, offset time.Duration) {
	now := h.clock.Now().UnixNano()
	h.clock.Advance(time.Duration(int64(p)-now%int64(p)) + offset)
}

// take calls Take with a fresh result slice and fails the test on error.
func (h *harness) take(t *testing.T, mode limiter.Mode, reqs ...limiter.Request) []limiter.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res := make([]limiter.Result, len(reqs))
	if err := h.store.Take(ctx, mode, reqs, res); err != nil {
		t.Fatalf("Take(%v): %v", reqs, err)
	}
	return res
}

// take1 applies one request in CountAll mode.
func (h *harness) take1(t *testing.T, key string, l limiter.Limit, hits int64) limiter.Result {
	t.Helper()
	return h.take(t, limiter.CountAll, limiter.Request{Key: key, Limit: l, Hits: hits})[0]
}

// want is what a real-time subtest can assert of a Result exactly; expect
// also checks the rules for RetryAfter and ResetAfter that hold at any time.
type want struct {
	allowed   bool
	remaining int64
	limit     int64
}

func expect(t *testing.T, what string, got limiter.Result, w want) {
	t.Helper()
	if got.Allowed != w.allowed || got.Remaining != w.remaining || got.Limit != w.limit {
		t.Errorf("%s: got Allowed=%v Remaining=%d Limit=%d, want Allowed=%v Remaining=%d Limit=%d (result %+v)",
			what, got.Allowed, got.Remaining, got.Limit, w.allowed, w.remaining, w.limit, got)
	}
	if got.Allowed && got.RetryAfter != 0 {
		t.Errorf("%s: got RetryAfter %v on an admitted request, want 0", what, got.RetryAfter)
	}
	if !got.Allowed && got.RetryAfter <= 0 {
		t.Errorf("%s: got RetryAfter %v on a refused request, want > 0", what, got.RetryAfter)
	}
	if got.ResetAfter < 0 {
		t.Errorf("%s: got negative ResetAfter %v", what, got.ResetAfter)
	}
}

// expectExact compares whole results (fake clock only).
func expectExact(t *testing.T, what string, got, want limiter.Result) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %+v, want %+v", what, got, want)
	}
}

func testFixedWindowCounts(t *testing.T, h *harness) {
	p := h.longPeriod()
	l := limiter.Limit{Requests: 5, Period: p}
	k := h.key("k")
	for i := range int64(5) {
		r := h.take1(t, k, l, 1)
		expect(t, fmt.Sprintf("hit %d", i+1), r, want{allowed: true, remaining: 4 - i, limit: 5})
		if r.ResetAfter <= 0 || r.ResetAfter > p {
			t.Errorf("hit %d: got ResetAfter %v, want within (0, %v]", i+1, r.ResetAfter, p)
		}
	}
	r := h.take1(t, k, l, 1)
	expect(t, "hit 6", r, want{remaining: 0, limit: 5})
	if r.RetryAfter != r.ResetAfter {
		t.Errorf("hit 6: got RetryAfter %v, want ResetAfter %v (end of window)", r.RetryAfter, r.ResetAfter)
	}
}

func testFixedWindowRefusedHits(t *testing.T, h *harness) {
	l := limiter.Limit{Requests: 10, Period: h.longPeriod()}
	k := h.key("k")
	expect(t, "hits 4", h.take1(t, k, l, 4), want{allowed: true, remaining: 6, limit: 10})
	expect(t, "hits 7", h.take1(t, k, l, 7), want{remaining: 0, limit: 10})
	// The 7 refused hits were counted (count 11 > 10): even a read is over.
	expect(t, "read after refusal", h.take1(t, k, l, 0), want{remaining: 0, limit: 10})
	expect(t, "hits 1 after refusal", h.take1(t, k, l, 1), want{remaining: 0, limit: 10})
}

func testSlidingWindowRefusedHits(t *testing.T, h *harness) {
	l := limiter.Limit{Requests: 10, Period: h.longPeriod(), Algorithm: limiter.SlidingWindow}
	k := h.key("k")
	expect(t, "hits 4", h.take1(t, k, l, 4), want{allowed: true, remaining: 6, limit: 10})
	expect(t, "hits 7", h.take1(t, k, l, 7), want{remaining: 6, limit: 10})
	expect(t, "hits 6", h.take1(t, k, l, 6), want{allowed: true, remaining: 0, limit: 10})
	expect(t, "hits 1", h.take1(t, k, l, 1), want{remaining: 0, limit: 10})
	expect(t, "hits 11", h.take1(t, h.key("big"), l, 11), want{remaining: 10, limit: 10})
}

func testTokenBucketBurst(t *testing.T, h *harness) {
	p := h.longPeriod()
	l := limiter.Limit{Requests: 10, Period: p, Burst: 3, Algorithm: limiter.TokenBucket}
	k := h.key("k")
	for i := range int64(3) {
		expect(t, fmt.Sprintf("hit %d", i+1), h.take1(t, k, l, 1), want{allowed: true, remaining: 2 - i, limit: 3})
	}
	r := h.take1(t, k, l, 1)
	expect(t, "hit 4", r, want{remaining: 0, limit: 3})
	// One token every P/R; the three were taken moments ago.
	emission := p / 10
	if r.RetryAfter > emission || r.RetryAfter < emission-time.Minute {
		t.Errorf("hit 4: got RetryAfter %v, want about %v (one emission interval)", r.RetryAfter, emission)
	}
	if r.ResetAfter > 3*emission || r.ResetAfter < 3*emission-time.Minute {
		t.Errorf("hit 4: got ResetAfter %v, want about %v (three emission intervals)", r.ResetAfter, 3*emission)
	}
	expect(t, "hits 4 on a fresh key", h.take1(t, h.key("big"), l, 4), want{remaining: 3, limit: 3})
}

func testTokenBucketDefaultBurst(t *testing.T, h *harness) {
	l := limiter.Limit{Requests: 4, Period: h.longPeriod(), Algorithm: limiter.TokenBucket}
	k := h.key("k")
	expect(t, "hits 3", h.take1(t, k, l, 3), want{allowed: true, remaining: 1, limit: 4})
	expect(t, "hits 2", h.take1(t, k, l, 2), want{remaining: 1, limit: 4})
	expect(t, "hits 1", h.take1(t, k, l, 1), want{allowed: true, remaining: 0, limit: 4})
}

func allAlgorithms(p time.Duration, requests int64) []limiter.Limit {
	return []limiter.Limit{
		{Requests: requests, Period: p},
		{Requests: requests, Period: p, Algorithm: limiter.SlidingWindow},
		{Requests: requests, Period: p, Algorithm: limiter.TokenBucket},
	}
}

func testZeroHits(t *testing.T, h *harness) {
	for _, l := range allAlgorithms(h.longPeriod(), 3) {
		k := h.key(l.Algorithm.String())
		for i := range 3 {
			expect(t, fmt.Sprintf("%s: read %d of a new key", l.Algorithm, i), h.take1(t, k, l, 0), want{allowed: true, remaining: 3, limit: 3})
		}
		expect(t, fmt.Sprintf("%s: hit", l.Algorithm), h.take1(t, k, l, 1), want{allowed: true, remaining: 2, limit: 3})
		expect(t, fmt.Sprintf("%s: read after a hit", l.Algorithm), h.take1(t, k, l, 0), want{allowed: true, remaining: 2, limit: 3})
		expect(t, fmt.Sprintf("%s: hit after a read", l.Algorithm), h.take1(t, k, l, 1), want{allowed: true, remaining: 1, limit: 3})
	}
}

func testZeroRequests(t *testing.T, h *harness) {
	p := h.longPeriod()
	for _, l := range allAlgorithms(p, 0) {
		k := h.key(l.Algorithm.String())
		for _, hits := range []int64{1, 0, 5} {
			r := h.take1(t, k, l, hits)
			expect(t, fmt.Sprintf("%s: hits %d", l.Algorithm, hits), r, want{remaining: 0, limit: 0})
			if r.RetryAfter != r.ResetAfter || r.RetryAfter > p {
				t.Errorf("%s: hits %d: got RetryAfter %v and ResetAfter %v, want them equal and at most %v", l.Algorithm, hits, r.RetryAfter, r.ResetAfter, p)
			}
		}
		// Nothing was counted: the same key under a real limit is fresh.
		l.Requests = 2
		expect(t, fmt.Sprintf("%s: after requests 0", l.Algorithm), h.take1(t, k, l, 1), want{allowed: true, remaining: 1, limit: 2})
	}
}

func testCountAll(t *testing.T, h *harness) {
	p := h.longPeriod()
	a, b := h.key("a"), h.key("b")
	la, lb := limiter.Limit{Requests: 5, Period: p}, limiter.Limit{Requests: 1, Period: p, Algorithm: limiter.SlidingWindow}
	res := h.take(t, limiter.CountAll, limiter.Request{Key: a, Limit: la, Hits: 1}, limiter.Request{Key: b, Limit: lb, Hits: 2})
	expect(t, "a", res[0], want{allowed: true, remaining: 4, limit: 5})
	expect(t, "b", res[1], want{remaining: 1, limit: 1})
	expect(t, "a afterwards", h.take1(t, a, la, 0), want{allowed: true, remaining: 4, limit: 5})
}

func testCountIfAllAllowedRefused(t *testing.T, h *harness) {
	p := h.longPeriod()
	a, b, c := h.key("a"), h.key("b"), h.key("c")
	la := limiter.Limit{Requests: 5, Period: p, Algorithm: limiter.TokenBucket}
	lb := limiter.Limit{Requests: 1, Period: p}
	lc := limiter.Limit{Requests: 5, Period: p, Algorithm: limiter.SlidingWindow}
	expect(t, "c before", h.take1(t, c, lc, 2), want{allowed: true, remaining: 3, limit: 5})
	res := h.take(t, limiter.CountIfAllAllowed,
		limiter.Request{Key: a, Limit: la, Hits: 1},
		limiter.Request{Key: b, Limit: lb, Hits: 2},
		limiter.Request{Key: c, Limit: lc, Hits: 1})
	// Remaining describes the unchanged counters.
	expect(t, "a", res[0], want{allowed: true, remaining: 5, limit: 5})
	expect(t, "b", res[1], want{remaining: 1, limit: 1})
	expect(t, "c", res[2], want{allowed: true, remaining: 3, limit: 5})
	expect(t, "a afterwards", h.take1(t, a, la, 0), want{allowed: true, remaining: 5, limit: 5})
	// Not even the fixed window's refused hits were counted.
	expect(t, "b afterwards", h.take1(t, b, lb, 0), want{allowed: true, remaining: 1, limit: 1})
	expect(t, "c afterwards", h.take1(t, c, lc, 0), want{allowed: true, remaining: 3, limit: 5})
}

func testCountIfAllAllowedAdmitted(t *testing.T, h *harness) {
	p := h.longPeriod()
	a, b := h.key("a"), h.key("b")
	la, lb := limiter.Limit{Requests: 5, Period: p}, limiter.Limit{Requests: 2, Period: p, Algorithm: limiter.TokenBucket}
	for i := range int64(2) {
		res := h.take(t, limiter.CountIfAllAllowed, limiter.Request{Key: a, Limit: la, Hits: 1}, limiter.Request{Key: b, Limit: lb, Hits: 1})
		expect(t, fmt.Sprintf("call %d: a", i+1), res[0], want{allowed: true, remaining: 4 - i, limit: 5})
		expect(t, fmt.Sprintf("call %d: b", i+1), res[1], want{allowed: true, remaining: 1 - i, limit: 2})
	}
	res := h.take(t, limiter.CountIfAllAllowed, limiter.Request{Key: a, Limit: la, Hits: 1}, limiter.Request{Key: b, Limit: lb, Hits: 1})
	expect(t, "call 3: a", res[0], want{allowed: true, remaining: 3, limit: 5})
	expect(t, "call 3: b", res[1], want{remaining: 0, limit: 2})
	expect(t, "a afterwards", h.take1(t, a, la, 0), want{allowed: true, remaining: 3, limit: 5})
}

// testCountIfAllAllowedShadow: a refused Shadow request does not stop the
// others from counting and is itself applied as in CountAll; a refused
// request that is not Shadow still vetoes the call, Shadow ones included.
func testCountIfAllAllowedShadow(t *testing.T, h *harness) {
	p := h.longPeriod()
	a, s, f := h.key("a"), h.key("shadow"), h.key("shadowfixed")
	la := limiter.Limit{Requests: 5, Period: p, Algorithm: limiter.SlidingWindow}
	ls := limiter.Limit{Requests: 1, Period: p, Algorithm: limiter.TokenBucket}
	lf := limiter.Limit{Requests: 1, Period: p}
	res := h.take(t, limiter.CountIfAllAllowed,
		limiter.Request{Key: a, Limit: la, Hits: 1},
		limiter.Request{Key: s, Limit: ls, Hits: 2, Shadow: true},
		limiter.Request{Key: f, Limit: lf, Hits: 2, Shadow: true})
	expect(t, "a", res[0], want{allowed: true, remaining: 4, limit: 5})
	expect(t, "shadow", res[1], want{remaining: 1, limit: 1})
	expect(t, "shadow fixed window", res[2], want{remaining: 0, limit: 1})
	expect(t, "a afterwards", h.take1(t, a, la, 0), want{allowed: true, remaining: 4, limit: 5})
	expect(t, "shadow afterwards (refused hits not counted)", h.take1(t, s, ls, 0), want{allowed: true, remaining: 1, limit: 1})
	expect(t, "shadow fixed window afterwards (refused hits counted)", h.take1(t, f, lf, 0), want{remaining: 0, limit: 1})

	// A firm refusal still vetoes everything, Shadow requests included.
	b := h.key("b")
	lb := limiter.Limit{Requests: 1, Period: p}
	res = h.take(t, limiter.CountIfAllAllowed,
		limiter.Request{Key: a, Limit: la, Hits: 1},
		limiter.Request{Key: s, Limit: ls, Hits: 1, Shadow: true},
		limiter.Request{Key: b, Limit: lb, Hits: 2})
	expect(t, "vetoed: b", res[2], want{remaining: 1, limit: 1})
	expect(t, "vetoed: a afterwards", h.take1(t, a, la, 0), want{allowed: true, remaining: 4, limit: 5})
	expect(t, "vetoed: shadow afterwards", h.take1(t, s, ls, 0), want{allowed: true, remaining: 1, limit: 1})
}

func testSameKeyTwice(t *testing.T, h *harness) {
	p := h.longPeriod()
	for _, l := range allAlgorithms(p, 5) {
		alg := l.Algorithm.String()
		k := h.key(alg + "/all")
		res := h.take(t, limiter.CountAll, limiter.Request{Key: k, Limit: l, Hits: 3}, limiter.Request{Key: k, Limit: l, Hits: 3})
		expect(t, alg+": count all: first", res[0], want{allowed: true, remaining: 2, limit: 5})
		wantAfter := int64(2) // refused hits not counted...
		if l.Algorithm == limiter.FixedWindow {
			wantAfter = 0 // ...except by the fixed window
		}
		expect(t, alg+": count all: second", res[1], want{remaining: wantAfter, limit: 5})
		res = h.take(t, limiter.CountAll, limiter.Request{Key: k, Limit: l, Hits: 1}, limiter.Request{Key: k, Limit: l, Hits: 1})
		if l.Algorithm == limiter.FixedWindow {
			expect(t, alg+": count all: then first", res[0], want{remaining: 0, limit: 5})
		} else {
			expect(t, alg+": count all: then first", res[0], want{allowed: true, remaining: 1, limit: 5})
			expect(t, alg+": count all: then second", res[1], want{allowed: true, remaining: 0, limit: 5})
		}

		k = h.key(alg + "/if-all")
		res = h.take(t, limiter.CountIfAllAllowed, limiter.Request{Key: k, Limit: l, Hits: 3}, limiter.Request{Key: k, Limit: l, Hits: 3})
		expect(t, alg+": count if all allowed: first", res[0], want{allowed: true, remaining: 5, limit: 5})
		expect(t, alg+": count if all allowed: second", res[1], want{remaining: 5, limit: 5})
		res = h.take(t, limiter.CountIfAllAllowed, limiter.Request{Key: k, Limit: l, Hits: 2}, limiter.Request{Key: k, Limit: l, Hits: 3})
		expect(t, alg+": count if all allowed: exactly full, first", res[0], want{allowed: true, remaining: 3, limit: 5})
		expect(t, alg+": count if all allowed: exactly full, second", res[1], want{allowed: true, remaining: 0, limit: 5})
	}
}

func testMixedAlgorithms(t *testing.T, h *harness) {
	ls := allAlgorithms(h.longPeriod(), 2)
	reqs := make([]limiter.Request, len(ls))
	for i, l := range ls {
		reqs[i] = limiter.Request{Key: h.key(l.Algorithm.String()), Limit: l, Hits: 1}
	}
	for call, wantRemaining := range []int64{1, 0} {
		for i, r := range h.take(t, limiter.CountAll, reqs...) {
			expect(t, fmt.Sprintf("call %d: %s", call+1, ls[i].Algorithm), r, want{allowed: true, remaining: wantRemaining, limit: 2})
		}
	}
	for i, r := range h.take(t, limiter.CountAll, reqs...) {
		expect(t, fmt.Sprintf("call 3: %s", ls[i].Algorithm), r, want{remaining: 0, limit: 2})
	}
}

// testKeysAreCopied passes keys that alias a buffer the caller reuses, as the
// server does, and checks that the store's counters are not corrupted.
func testKeysAreCopied(t *testing.T, h *harness) {
	l := limiter.Limit{Requests: 3, Period: h.longPeriod()}
	first, second := h.key("first"), h.key("other")
	if len(first) != len(second) {
		t.Fatalf("test keys must have equal length")
	}
	buf := []byte(first)
	aliased := unsafe.String(&buf[0], len(buf))
	expect(t, "first via buffer", h.take1(t, aliased, l, 1), want{allowed: true, remaining: 2, limit: 3})
	copy(buf, second) // aliased now reads as second
	expect(t, "other via buffer", h.take1(t, aliased, l, 2), want{allowed: true, remaining: 1, limit: 3})
	copy(buf, "scribbled over, not a key of this test......................................................")
	expect(t, "first", h.take1(t, first, l, 0), want{allowed: true, remaining: 2, limit: 3})
	expect(t, "other", h.take1(t, second, l, 0), want{allowed: true, remaining: 1, limit: 3})
}

func testDistinctKeys(t *testing.T, h *harness) {
	l := limiter.Limit{Requests: 1, Period: h.longPeriod(), Algorithm: limiter.SlidingWindow}
	const n = 200
	for round, allowed := range []bool{true, false} {
		for i := range n {
			r := h.take1(t, h.key(fmt.Sprint(i)), l, 1)
			if r.Allowed != allowed {
				t.Fatalf("round %d, key %d: got Allowed %v, want %v", round, i, r.Allowed, allowed)
			}
		}
	}
}

func testConcurrentSameKey(t *testing.T, h *harness) {
	const goroutines, calls, limit = 8, 40, 100
	p := h.longPeriod()
	for _, l := range allAlgorithms(p, limit) {
		k := h.key(l.Algorithm.String())
		var admitted atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, goroutines)
		for range goroutines {
			wg.Go(func() {
				res := make([]limiter.Result, 1)
				reqs := []limiter.Request{{Key: k, Limit: l, Hits: 1}}
				for range calls {
					if err := h.store.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
						errs <- err
						return
					}
					if res[0].Allowed {
						admitted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("%s: Take: %v", l.Algorithm, err)
		}
		if got := admitted.Load(); got != limit {
			t.Errorf("%s: %d goroutines x %d calls admitted %d, want exactly %d", l.Algorithm, goroutines, calls, got, limit)
		}
	}
}

// testConcurrentMultiKey runs calls over two shared keys, in both orders,
// in CountIfAllAllowed mode: each call counts on both keys or on neither,
// and concurrent calls do not deadlock.
func testConcurrentMultiKey(t *testing.T, h *harness) {
	const goroutines, calls = 8, 30
	p := h.longPeriod()
	la := limiter.Limit{Requests: 50, Period: p}
	lb := limiter.Limit{Requests: 1000, Period: p, Algorithm: limiter.TokenBucket}
	a, b := h.key("a"), h.key("b")
	var admitted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			reqs := []limiter.Request{{Key: a, Limit: la, Hits: 1}, {Key: b, Limit: lb, Hits: 1}}
			if g%2 == 1 {
				reqs[0], reqs[1] = reqs[1], reqs[0]
			}
			res := make([]limiter.Result, 2)
			for range calls {
				if err := h.store.Take(context.Background(), limiter.CountIfAllAllowed, reqs, res); err != nil {
					errs <- err
					return
				}
				if res[0].Allowed && res[1].Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Take: %v", err)
	}
	if got := admitted.Load(); got != la.Requests {
		t.Errorf("admitted %d calls, want exactly %d", got, la.Requests)
	}
	// b was counted only for the admitted calls.
	expect(t, "b afterwards", h.take1(t, b, lb, 0), want{allowed: true, remaining: lb.Requests - la.Requests, limit: lb.Requests})
}

func testEmptyCall(t *testing.T, h *harness) {
	if err := h.store.Take(context.Background(), limiter.CountAll, nil, nil); err != nil {
		t.Errorf("Take with no requests: got error %v, want nil", err)
	}
}

func testErrors(t *testing.T, h *harness) {
	res := make([]limiter.Result, 1)
	bad := []limiter.Request{{Key: h.key("bad"), Limit: limiter.Limit{Requests: 1}, Hits: 1}}
	if err := h.store.Take(context.Background(), limiter.CountAll, bad, res); !errors.Is(err, limiter.ErrInvalidLimit) {
		t.Errorf("zero period: got error %v, want one wrapping limiter.ErrInvalidLimit", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	good := []limiter.Request{{Key: h.key("good"), Limit: limiter.Limit{Requests: 1, Period: h.longPeriod()}, Hits: 1}}
	if err := h.store.Take(ctx, limiter.CountAll, good, res); err == nil {
		t.Errorf("cancelled context: got no error, want one")
	}
}

func testFixedWindowEdges(t *testing.T, h *harness) {
	const s = time.Second
	l := limiter.Limit{Requests: 3, Period: time.Minute}
	k := h.key("k")
	h.alignTo(time.Minute, 45*s)
	expectExact(t, "at :45", h.take1(t, k, l, 2), limiter.Result{Allowed: true, Limit: 3, Remaining: 1, ResetAfter: 15 * s})
	h.clock.Advance(14 * s)
	expectExact(t, "at :59", h.take1(t, k, l, 1), limiter.Result{Allowed: true, Limit: 3, Remaining: 0, ResetAfter: s})
	h.clock.Advance(s - time.Nanosecond)
	expectExact(t, "1ns before the minute", h.take1(t, k, l, 1), limiter.Result{Limit: 3, ResetAfter: time.Nanosecond, RetryAfter: time.Nanosecond})
	h.clock.Advance(time.Nanosecond)
	expectExact(t, "at the minute", h.take1(t, k, l, 1), limiter.Result{Allowed: true, Limit: 3, Remaining: 2, ResetAfter: 60 * s})
}

func testSlidingWindowWeights(t *testing.T, h *harness) {
	const s = time.Second
	l := limiter.Limit{Requests: 10, Period: time.Minute, Algorithm: limiter.SlidingWindow}
	k := h.key("k")
	h.alignTo(time.Minute, 0)
	expectExact(t, "10 at :00", h.take1(t, k, l, 10), limiter.Result{Allowed: true, Limit: 10, ResetAfter: 120 * s})
	h.clock.Advance(90 * s) // half of the previous window still counts: 5
	expectExact(t, "5 at 1:30", h.take1(t, k, l, 5), limiter.Result{Allowed: true, Limit: 10, ResetAfter: 90 * s})
	// 10*(60s-x)/60s + 5 + 1 <= 10 from x = 36s.
	expectExact(t, "1 more at 1:30", h.take1(t, k, l, 1), limiter.Result{Limit: 10, ResetAfter: 90 * s, RetryAfter: 6 * s})
	h.clock.Advance(6 * s)
	expectExact(t, "1 at 1:36", h.take1(t, k, l, 1), limiter.Result{Allowed: true, Limit: 10, ResetAfter: 84 * s})
}

func testTokenBucketRefill(t *testing.T, h *harness) {
	const s = time.Second
	l := limiter.Limit{Requests: 10, Period: 10 * s, Burst: 5, Algorithm: limiter.TokenBucket}
	k := h.key("k")
	expectExact(t, "burst", h.take1(t, k, l, 5), limiter.Result{Allowed: true, Limit: 5, ResetAfter: 5 * s})
	expectExact(t, "over", h.take1(t, k, l, 1), limiter.Result{Limit: 5, ResetAfter: 5 * s, RetryAfter: s})
	h.clock.Advance(s)
	expectExact(t, "refilled one", h.take1(t, k, l, 1), limiter.Result{Allowed: true, Limit: 5, ResetAfter: 5 * s})
	h.clock.Advance(2500 * time.Millisecond)
	expectExact(t, "read", h.take1(t, k, l, 0), limiter.Result{Allowed: true, Limit: 5, Remaining: 2, ResetAfter: 2500 * time.Millisecond})
	expectExact(t, "3 is one too many", h.take1(t, k, l, 3), limiter.Result{Limit: 5, Remaining: 2, ResetAfter: 2500 * time.Millisecond, RetryAfter: 500 * time.Millisecond})
}

func testExpiry(t *testing.T, h *harness) {
	for _, l := range allAlgorithms(time.Second, 2) {
		k := h.key(l.Algorithm.String())
		expect(t, fmt.Sprintf("%s: first", l.Algorithm), h.take1(t, k, l, 2), want{allowed: true, remaining: 0, limit: 2})
		h.clock.Advance(3 * time.Second)
		expect(t, fmt.Sprintf("%s: after 3 periods", l.Algorithm), h.take1(t, k, l, 1), want{allowed: true, remaining: 1, limit: 2})
	}
}

// testClockStepBack steps the clock back across a window boundary and
// forward again: a stored window newer than now is not stale, so no
// algorithm admits more than its limit (issue 16, finding 9).
func testClockStepBack(t *testing.T, h *harness) {
	const s = time.Second
	h.alignTo(time.Minute, 10*s)
	for _, l := range allAlgorithms(time.Minute, 3) {
		k := h.key(l.Algorithm.String())
		admitted := 0
		for _, step := range []time.Duration{0, -30 * s, 30 * s} {
			h.clock.Advance(step)
			for range 3 {
				r := h.take1(t, k, l, 1)
				if r.Allowed {
					admitted++
				}
				if r.Remaining < 0 || r.Remaining > 3 || r.ResetAfter < 0 || (!r.Allowed && r.RetryAfter <= 0) {
					t.Errorf("%s: after a step of %v: result %+v out of range", l.Algorithm, step, r)
				}
			}
		}
		if admitted != 3 {
			t.Errorf("%s: 3/minute admitted %d hits with the clock stepped back 30s and forward again, want 3", l.Algorithm, admitted)
		}
	}
}
