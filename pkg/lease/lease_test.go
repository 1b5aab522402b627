package lease

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// counting counts the calls to a Store and can be made to fail.
type counting struct {
	limiter.Store
	calls atomic.Int64
	fail  atomic.Bool
}

var errDown = errors.New("store down")

func (c *counting) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	c.calls.Add(1)
	if c.fail.Load() {
		return errDown
	}
	return c.Store.Take(ctx, mode, reqs, res)
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newMem returns a memory store on clock (a stand-in for the shared store).
func newMem(t *testing.T, clock *fakeClock) *counting {
	t.Helper()
	m, err := memstore.New(memstore.Options{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return &counting{Store: m}
}

func newLease(t *testing.T, inner limiter.Store, opts Options) *Store {
	t.Helper()
	s, err := New(inner, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// take1 takes one request and returns its result.
func take1(t testing.TB, s limiter.Store, key string, l limiter.Limit, ls *limiter.Lease, hits int64) limiter.Result {
	t.Helper()
	var res [1]limiter.Result
	if err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: key, Limit: l, Hits: hits, Lease: ls}}, res[:]); err != nil {
		t.Fatalf("Take(%s): %v", key, err)
	}
	return res[0]
}

func TestNew(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil) succeeded")
	}
	if _, err := New(&counting{}, Options{MaxKeys: -1}); err == nil {
		t.Error("New with MaxKeys -1 succeeded")
	}
}

func TestColdKeysNeverLease(t *testing.T) {
	clock := &fakeClock{now: t0}
	inner := newMem(t, clock)
	s := newLease(t, inner, Options{Now: clock.Now})
	l := limiter.Limit{Requests: 1000, Period: time.Minute}
	ls := &limiter.Lease{HotAfter: 5}
	decisions := 0
	for round := range 4 { // each key 4 times: below hot_after
		for k := range 1000 {
			take1(t, s, fmt.Sprintf("k%d", k), l, ls, 1)
			decisions++
		}
		_ = round
	}
	if got := inner.calls.Load(); got != int64(decisions) {
		t.Errorf("store calls = %d for %d decisions of cold keys, want one each", got, decisions)
	}
	if n := s.Len(); n != 0 {
		t.Errorf("%d keys leased, want none", n)
	}
	if st := s.Stats(); st.Local != 0 || st.Blocks != 0 {
		t.Errorf("stats %+v, want no lease", st)
	}
}

func TestHotKeyCallsPerDecision(t *testing.T) {
	for _, alg := range []limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.TokenBucket} {
		t.Run(alg.String(), func(t *testing.T) {
			clock := &fakeClock{now: t0}
			inner := newMem(t, clock)
			s := newLease(t, inner, Options{Now: clock.Now})
			l := limiter.Limit{Requests: 1_000_000, Period: time.Minute, Algorithm: alg}
			const n = 20000
			for i := range n {
				if r := take1(t, s, "hot", l, &limiter.Lease{}, 1); !r.Allowed {
					t.Fatalf("decision %d refused: %+v", i, r)
				}
				if i%100 == 0 {
					clock.Advance(time.Millisecond)
				}
			}
			per := float64(inner.calls.Load()) / n
			t.Logf("%d store calls for %d decisions (%.4f per decision), %+v", inner.calls.Load(), n, per, s.Stats())
			if per > 0.05 {
				t.Errorf("%.4f store calls per decision, want at most 0.05", per)
			}
		})
	}
}

// TestDistinctKeyFlood: a client cycling through many distinct keys, each
// hit often enough to turn hot, cannot grow the table past MaxKeys nor make
// a decision cost more than one store call on average.
func TestDistinctKeyFlood(t *testing.T) {
	clock := &fakeClock{now: t0}
	inner := newMem(t, clock)
	const maxKeys = 64
	s := newLease(t, inner, Options{Now: clock.Now, MaxKeys: maxKeys})
	l := limiter.Limit{Requests: 1000, Period: time.Hour}
	ls := &limiter.Lease{HotAfter: 2}
	decisions := 0
	for k := range 5000 {
		for range 3 {
			take1(t, s, fmt.Sprintf("flood-%d", k), l, ls, 1)
			decisions++
		}
	}
	if n := s.Len(); n > maxKeys {
		t.Errorf("table holds %d keys, want at most %d", n, maxKeys)
	}
	if got := inner.calls.Load(); got > int64(decisions) {
		t.Errorf("store calls = %d for %d decisions, want at most one each", got, decisions)
	}
	if st := s.Stats(); st.Evicted == 0 {
		t.Errorf("stats %+v: no eviction, want the table to have been full", st)
	}
	// Keys already at their limit: every decision after the first is a
	// refusal, and still one call at most.
	calls, decisions := inner.calls.Load(), 0
	full := limiter.Limit{Requests: 100, Period: time.Hour}
	for k := range 3000 {
		take1(t, inner.Store, fmt.Sprintf("full-%d", k), full, nil, 100) // used up elsewhere
		for range 5 {
			take1(t, s, fmt.Sprintf("full-%d", k), full, ls, 1)
			decisions++
		}
	}
	if got := inner.calls.Load() - calls; got > int64(decisions) {
		t.Errorf("keys at their limit: %d store calls for %d decisions, want at most one each", got, decisions)
	}
	// A hot key still leases under the flood.
	before := s.Stats().Local
	for k := range 2000 {
		take1(t, s, fmt.Sprintf("flood2-%d", k), l, ls, 1)
		take1(t, s, "hot", limiter.Limit{Requests: 1_000_000, Period: time.Hour}, ls, 1)
	}
	if got := s.Stats().Local - before; got < 1900 {
		t.Errorf("hot key admitted %d times from blocks under a flood, want nearly all of its 2000", got)
	}
}

// TestFleetNeverOverAdmits: three replicas on one shared store, many
// goroutines each: the fleet never admits more than the limit (see
// fleetBound).
func TestFleetNeverOverAdmits(t *testing.T) {
	for _, alg := range []limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.TokenBucket} {
		t.Run(alg.String(), func(t *testing.T) {
			clock := &fakeClock{now: t0}
			inner := newMem(t, clock)
			var fleet []*Store
			for range 3 {
				fleet = append(fleet, newLease(t, inner, Options{Now: clock.Now}))
			}
			fleetBound(t, fleet, clock, limiter.Limit{Requests: 1000, Period: time.Minute, Algorithm: alg}, false)
		})
	}
}

// fleetBound checks the hard bound of leasing on the replicas of fleet,
// which share one store on clock, for limit l of one key, in phases with
// the clock frozen (so that what each phase admits is known exactly):
//
//  1. a light phase: every replica turns the key hot and takes a block,
//     leaving most of it unused;
//  2. the clock moves to the next window (the token bucket: by half its
//     refill); every replica hammers the key with many goroutines. A window
//     admits at most R: blocks of the last window do not spill into this
//     one. The token bucket admits at most B + elapsed/T since phase 1.
//  3. the clock moves by a quarter period and phase 2 repeats.
//
// With returns (a store that takes blocks back), every replica returns its
// light-phase block (most of it unused) before phase 2; then, in phases 2
// and 3, a goroutine per replica returns all its blocks over and over, and
// one worker per replica after every 8th take, racing the others'
// admissions: the bounds hold all the same.
func fleetBound(t *testing.T, fleet []*Store, clock *fakeClock, l limiter.Limit, returns bool) {
	t.Helper()
	ls := &limiter.Lease{HotAfter: 1, Fraction: 0.2}
	start := clock.Now()
	light := hammer(t, fleet, l, ls, 1, 3, false)
	if light != int64(3*len(fleet)) {
		t.Fatalf("light phase admitted %d, want %d", light, 3*len(fleet))
	}
	if returns {
		for i, s := range fleet {
			held := s.unusedHits()
			s.returnBlocks(context.Background(), 0)
			// The clock has not moved: every unused hit goes back.
			if got := s.Stats().Returned; got != held || held < 100 {
				t.Errorf("replica %d returned %d hits of its light-phase block, want all %d unused (2 used of about a fifth of the limit)", i, got, held)
			}
		}
		// From now on each replica also returns every block it holds, over
		// and over, while its workers admit from them.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for _, s := range fleet {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
						s.returnBlocks(context.Background(), 0)
						runtime.Gosched() // the workers run between returns, on one CPU too
					}
				}
			})
		}
		defer wg.Wait()
		defer close(stop)
	}
	total := light
	for phase, step := range []time.Duration{l.Period, l.Period / 4} {
		if l.Algorithm == limiter.TokenBucket && phase == 0 {
			step = l.Period / 2
		}
		clock.Advance(step)
		got := hammer(t, fleet, l, ls, 16, 200, returns)
		total += got
		t.Logf("phase %d: admitted %d (total %d), %+v", phase+2, got, total, fleet[0].Stats())
		if phase == 0 && got < l.Requests/2 {
			t.Errorf("phase %d admitted %d: leasing stranded too much", phase+2, got)
		}
		switch l.Algorithm {
		case limiter.TokenBucket:
			elapsed := clock.Now().Sub(start)
			if bound := l.Capacity() + int64(elapsed/l.Emission()); total > bound {
				t.Fatalf("admitted %d within %v of a full bucket, want at most B + elapsed/T = %d", total, elapsed, bound)
			}
		case limiter.SlidingWindow:
			if phase == 0 && got > l.Requests {
				t.Fatalf("phase %d admitted %d in one window, limit %d", phase+2, got, l.Requests)
			}
			if phase == 1 && total-light > l.Requests {
				t.Fatalf("admitted %d in one window, limit %d", total-light, l.Requests)
			}
		default:
			if phase == 0 && got > l.Requests {
				t.Fatalf("phase %d admitted %d in one window, limit %d", phase+2, got, l.Requests)
			}
			if phase == 1 && total-light > l.Requests {
				t.Fatalf("admitted %d in one window, limit %d", total-light, l.Requests)
			}
		}
	}
}

// unusedHits returns the hits granted and not used in s's blocks.
func (s *Store) unusedHits() int64 {
	n := int64(0)
	for i := range s.table.shards {
		sh := &s.table.shards[i]
		sh.mu.Lock()
		for _, e := range sh.entries {
			n += e.granted - e.used
		}
		sh.mu.Unlock()
	}
	return n
}

// hammer has workers goroutines per replica take n single hits of one key
// each, and returns how many the fleet admitted. With returns, the first
// worker of each replica returns all its blocks after every 8th take.
func hammer(t *testing.T, fleet []*Store, l limiter.Limit, ls *limiter.Lease, workers, n int, returns bool) int64 {
	t.Helper()
	var admitted atomic.Int64
	var wg sync.WaitGroup
	key := "hot " + l.String() // a key per limit: tests may share a store
	for _, s := range fleet {
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var res [1]limiter.Result
				for i := range n {
					if returns && w == 0 && i%8 == 7 {
						s.returnBlocks(context.Background(), 0)
					}
					if err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: key, Limit: l, Hits: 1, Lease: ls}}, res[:]); err != nil {
						t.Error(err)
						return
					}
					if res[0].Allowed {
						admitted.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	return admitted.Load()
}

// TestCountIfAllAllowedGivesBack: a call whose other request is refused
// counts nothing, not even the hits admitted from a block.
func TestCountIfAllAllowedGivesBack(t *testing.T) {
	clock := &fakeClock{now: t0}
	inner := newMem(t, clock)
	s := newLease(t, inner, Options{Now: clock.Now})
	l := limiter.Limit{Requests: 1000, Period: time.Minute}
	ls := &limiter.Lease{HotAfter: 1}
	take1(t, s, "a", l, ls, 1) // turns hot: a normal call
	take1(t, s, "a", l, ls, 1) // takes a block of 99 (a tenth of 999, the remaining)
	sh, _ := s.table.shard("a")
	avail := func() int64 {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return sh.entries["a"].avail(clock.Now())
	}
	before := avail()
	reqs := []limiter.Request{
		{Key: "a", Limit: l, Hits: 5, Lease: ls},
		{Key: "b", Limit: limiter.Limit{Requests: 0, Period: time.Minute}, Hits: 1},
	}
	res := make([]limiter.Result, 2)
	if err := s.Take(context.Background(), limiter.CountIfAllAllowed, reqs, res); err != nil {
		t.Fatal(err)
	}
	if !res[0].Allowed || res[1].Allowed {
		t.Errorf("results %+v, want a allowed (in order) and b refused", res)
	}
	if got := avail(); got != before {
		t.Errorf("block holds %d after a refused call, want %d (nothing counted)", got, before)
	}
	// CountAll keeps a's hits.
	if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
		t.Fatal(err)
	}
	if got := avail(); got != before-5 {
		t.Errorf("block holds %d after a CountAll call, want %d", got, before-5)
	}
}

// TestStoreDown: a block take that fails fails the Take (the chain then
// falls back) and gives back what the call admitted; a block already
// granted still admits, since its hits were counted.
func TestStoreDown(t *testing.T) {
	clock := &fakeClock{now: t0}
	inner := newMem(t, clock)
	s := newLease(t, inner, Options{Now: clock.Now})
	l := limiter.Limit{Requests: 1000, Period: time.Minute}
	ls := &limiter.Lease{HotAfter: 1}
	take1(t, s, "a", l, ls, 1) // turns hot: a normal call
	take1(t, s, "a", l, ls, 1) // a block of 99
	inner.fail.Store(true)
	for i := range 98 {
		if r := take1(t, s, "a", l, ls, 1); !r.Allowed {
			t.Fatalf("hit %d from the granted block refused", i)
		}
	}
	var res [2]limiter.Result
	reqs := []limiter.Request{{Key: "b", Limit: l, Hits: 1, Lease: ls}, {Key: "a", Limit: l, Hits: 1, Lease: ls}}
	if err := s.Take(context.Background(), limiter.CountAll, reqs, res[:]); !errors.Is(err, errDown) {
		t.Fatalf("Take with the store down = %v, want %v", err, errDown)
	}
}

func TestPassThrough(t *testing.T) {
	clock := &fakeClock{now: t0}
	inner := newMem(t, clock)
	s := newLease(t, inner, Options{Now: clock.Now})
	l := limiter.Limit{Requests: 2, Period: time.Minute}
	// No lease, duplicates and reads go to the store as they are.
	for range 3 {
		take1(t, s, "plain", l, nil, 1)
	}
	if got := inner.calls.Load(); got != 3 {
		t.Errorf("calls = %d, want 3", got)
	}
	if r := take1(t, s, "plain", l, nil, 1); r.Allowed {
		t.Errorf("third hit of 2/min admitted: %+v", r)
	}
	ls := &limiter.Lease{HotAfter: 1}
	res := make([]limiter.Result, 2)
	reqs := []limiter.Request{{Key: "d", Limit: l, Hits: 1, Lease: ls}, {Key: "d", Limit: l, Hits: 2, Lease: ls}}
	if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
		t.Fatal(err)
	}
	if !res[0].Allowed || res[1].Allowed {
		t.Errorf("same key twice: %+v, want the store's in-order answer (1 then refused)", res)
	}
	if err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: "x", Limit: l, Hits: -1, Lease: ls}}, res[:1]); !limiter.IsRequestError(err) {
		t.Errorf("negative hits: %v, want a request error", err)
	}
}

// TestTokenBucketBlockDecays: a block taken and left idle while the store's
// bucket refills cannot add to a full bucket's burst.
func TestTokenBucketBlockDecays(t *testing.T) {
	clock := &fakeClock{now: t0}
	inner := newMem(t, clock)
	l := limiter.Limit{Requests: 100, Period: time.Second, Algorithm: limiter.TokenBucket} // B = 100, T = 10ms
	ls := &limiter.Lease{HotAfter: 1, Fraction: 0.5}
	a := newLease(t, inner, Options{Now: clock.Now})
	b := newLease(t, inner, Options{Now: clock.Now})
	take1(t, a, "k", l, ls, 1)            // turns hot: a normal call
	take1(t, a, "k", l, ls, 1)            // a holds 48 tokens of a block of 49
	clock.Advance(400 * time.Millisecond) // the store refilled 40 tokens: it holds 90
	admitted := 0
	for range 300 {
		if take1(t, b, "k", l, ls, 1).Allowed {
			admitted++
		}
		if take1(t, a, "k", l, ls, 1).Allowed {
			admitted++
		}
	}
	if admitted > 100 {
		t.Errorf("admitted %d at one instant, want at most the burst 100", admitted)
	}
}

// TestHostileHits: a client's hits (hits_addend) cannot push a leased key
// past its limit, overflow the block arithmetic, or lease a limit of 0.
func TestHostileHits(t *testing.T) {
	clock := &fakeClock{now: t0}
	inner := newMem(t, clock)
	s := newLease(t, inner, Options{Now: clock.Now})
	ls := &limiter.Lease{HotAfter: 1, Fraction: 1}
	l := limiter.Limit{Requests: 1000, Period: time.Minute}
	for _, tc := range []struct {
		name  string
		limit limiter.Limit
		hits  int64
		want  bool
	}{
		{"above the capacity", l, 1001, false},
		{"the largest count", l, limiter.MaxCount, false},
		{"a limit of 0", limiter.Limit{Requests: 0, Period: time.Minute}, 1, false},
		{"the whole quota at once", l, 1000, true},
		{"then nothing", l, 1, false},
	} {
		key := tc.name
		if tc.name == "then nothing" {
			key = "the whole quota at once"
		}
		if r := take1(t, s, key, tc.limit, ls, tc.hits); r.Allowed != tc.want {
			t.Errorf("%s: allowed %v, want %v (%+v)", tc.name, r.Allowed, tc.want, r)
		}
	}
	if st := s.Stats(); st.Local != 0 {
		t.Errorf("stats %+v: a block admitted hits that only the store may judge", st)
	}
}

// bounding is a counting store that bounds its own calls when accept is
// set (redisstore's BoundCalls), and records the bound and whether the last
// call's context had a deadline.
type bounding struct {
	*counting
	accept      bool
	bound       time.Duration
	hadDeadline atomic.Bool
}

func (b *bounding) BoundCalls(d time.Duration) bool {
	b.bound = d
	return b.accept
}

func (b *bounding) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	_, ok := ctx.Deadline()
	b.hadDeadline.Store(ok)
	return b.counting.Take(ctx, mode, reqs, res)
}

// BoundCalls passes the bound to a store that can keep it; calls with a
// lease, which may reach the store more than once, get one context for
// all of them, the others none.
func TestBoundCalls(t *testing.T) {
	clock := &fakeClock{now: t0}
	if s := newLease(t, newMem(t, clock), Options{Now: clock.Now}); s.BoundCalls(time.Second) {
		t.Error("BoundCalls = true over a store that cannot bound its calls")
	}
	declines := &bounding{counting: newMem(t, clock)}
	if s := newLease(t, declines, Options{Now: clock.Now}); s.BoundCalls(time.Second) || declines.bound != time.Second {
		t.Errorf("BoundCalls over a store that declines: true or bound %v not passed on", declines.bound)
	}

	inner := &bounding{counting: newMem(t, clock), accept: true}
	s := newLease(t, inner, Options{Now: clock.Now})
	if !s.BoundCalls(time.Second) || inner.bound != time.Second {
		t.Fatalf("BoundCalls = false or bound %v not passed on", inner.bound)
	}
	l := limiter.Limit{Requests: 1000, Period: time.Minute}
	take1(t, s, "plain", l, nil, 1)
	if inner.hadDeadline.Load() {
		t.Error("a call without lease reached the store with a deadline: the store bounds it")
	}
	take1(t, s, "leased", l, &limiter.Lease{}, 1)
	if !inner.hadDeadline.Load() {
		t.Error("a call with a lease reached the store without a deadline")
	}
}
