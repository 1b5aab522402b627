package chain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

func TestNewValidates(t *testing.T) {
	s := &fakeStore{}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no backends", opts: Options{}, wantErr: "no backends"},
		{name: "empty name", opts: Options{Backends: []Backend{{Store: s}}}, wantErr: "empty name"},
		{name: "duplicate", opts: Options{Backends: []Backend{{Name: "a", Store: s}, {Name: "a", Store: s}}}, wantErr: `duplicate name "a"`},
		{name: "nil store", opts: Options{Backends: []Backend{{Name: "a"}}}, wantErr: `backend "a": nil store`},
		{name: "fair share first", opts: Options{Backends: []Backend{{Name: "m", Store: s, BackendSettings: BackendSettings{FairShare: true}}}}, wantErr: "fair_share: the first backend has no backend before it"},
		{name: "negative replicas", opts: Options{Backends: []Backend{{Name: "a", Store: s}}, Settings: Settings{Replicas: -1}}, wantErr: "replicas: -1 is negative"},
		{name: "ratio above 1", opts: Options{Backends: []Backend{{Name: "a", Store: s}}, Settings: Settings{Breaker: BreakerSettings{FailureRatio: 1.5}}}, wantErr: "breaker.failure_ratio: 1.5 is above 1"},
		{name: "negative open_for", opts: Options{Backends: []Backend{{Name: "a", Store: s}}, Settings: Settings{Breaker: BreakerSettings{OpenFor: -time.Second}}}, wantErr: "breaker.open_for: -1s is negative"},
		{name: "negative probe timeout", opts: Options{Backends: []Backend{{Name: "a", Store: s}}, Settings: Settings{HealthCheck: HealthSettings{Timeout: -1}}}, wantErr: "health_check.timeout: -1ns is negative"},
		{name: "ok", opts: Options{Backends: []Backend{{Name: "r", Store: s}, {Name: "m", Store: s, Local: true, BackendSettings: BackendSettings{FairShare: true}}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.opts)
			if c != nil {
				defer c.Close()
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want none", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestTakeUsesFirstHealthyBackend(t *testing.T) {
	primary, fallback := &fakeStore{}, &fakeStore{}
	var ev events
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: fallback, Local: true}},
		Hooks:    ev.hooks(),
	})
	if err := take(t, c); err != nil {
		t.Fatalf("Take: %v", err)
	}
	if got, want := primary.calls.Load(), int64(1); got != want {
		t.Errorf("primary calls: got %d, want %d", got, want)
	}
	if got := fallback.calls.Load(); got != 0 {
		t.Errorf("fallback calls: got %d, want 0", got)
	}

	primary.set(errDown, false)
	if err := take(t, c); err != nil {
		t.Fatalf("Take with primary down: got %v, want nil (served by fallback)", err)
	}
	if got, want := fallback.calls.Load(), int64(1); got != want {
		t.Errorf("fallback calls: got %d, want %d", got, want)
	}
	if got, want := ev.failover("redis->memory:error"), 1; got != want {
		t.Errorf("failovers redis->memory:error: got %d, want %d", got, want)
	}
}

func TestBreakerTripsOnConsecutiveFailures(t *testing.T) {
	primary, fallback := &fakeStore{}, &fakeStore{}
	var ev events
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: fallback, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 3, OpenFor: time.Hour}},
		Hooks:    ev.hooks(),
	})
	primary.set(errDown, false)
	for i := range 10 {
		if err := take(t, c); err != nil {
			t.Fatalf("Take %d: %v", i, err)
		}
	}
	if got, want := primary.calls.Load(), int64(3); got != want {
		t.Errorf("primary calls: got %d, want %d (the breaker opens after 3 failures)", got, want)
	}
	if got, want := ev.stateLog(), []string{"redis:closed->open"}; !slices.Equal(got, want) {
		t.Errorf("state changes: got %v, want %v", got, want)
	}
	if got, want := ev.failover("redis->memory:error"), 3; got != want {
		t.Errorf("failovers for errors: got %d, want %d", got, want)
	}
	if got, want := ev.failover("redis->memory:open"), 7; got != want {
		t.Errorf("failovers for an open breaker: got %d, want %d", got, want)
	}
	if got := c.Statuses()[0].State; got != StateOpen {
		t.Errorf("primary state: got %v, want open", got)
	}
}

func TestBreakerTripsOnFailureRatio(t *testing.T) {
	primary := &fakeStore{}
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: &fakeStore{}, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 100, FailureRatio: 0.5, MinRequests: 10, Window: time.Minute, OpenFor: time.Hour}},
	})
	// Alternate failures and successes: never 2 failures in a row, half failed.
	for i := range 20 {
		if i%2 == 0 {
			primary.set(errDown, false)
		} else {
			primary.set(nil, false)
		}
		if err := take(t, c); err != nil {
			t.Fatalf("Take %d: %v", i, err)
		}
		// The ratio is checked on failures: call 10 is the 6th failure of
		// 11 calls, the first with at least 10 calls and half failed.
		want := StateClosed
		if i >= 10 {
			want = StateOpen
		}
		if got := c.Statuses()[0].State; got != want {
			t.Fatalf("after call %d: got state %v, want %v", i, got, want)
		}
	}
	if got, want := primary.calls.Load(), int64(11); got != want {
		t.Errorf("primary calls: got %d, want %d", got, want)
	}
}

func TestBreakerRatioNeedsMinRequests(t *testing.T) {
	primary := &fakeStore{}
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: &fakeStore{}, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 100, FailureRatio: 0.1, MinRequests: 50, Window: time.Minute}},
	})
	primary.set(errDown, false)
	for range 49 {
		take(t, c)
	}
	if got := c.Statuses()[0].State; got != StateClosed {
		t.Fatalf("after 49 failures: got %v, want closed (MinRequests 50)", got)
	}
	take(t, c)
	if got := c.Statuses()[0].State; got != StateOpen {
		t.Fatalf("after 50 failures: got %v, want open", got)
	}
}

func TestCallTimeoutCountsAsFailure(t *testing.T) {
	primary, fallback := &fakeStore{}, &fakeStore{}
	var ev events
	const timeout = 20 * time.Millisecond
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: fallback, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{CallTimeout: timeout, ConsecutiveFailures: 2, OpenFor: time.Hour}},
		Hooks:    ev.hooks(),
	})
	primary.set(nil, true) // hung: never answers
	var durs []time.Duration
	for range 4 {
		start := time.Now()
		if err := take(t, c); err != nil {
			t.Fatalf("Take: got %v, want nil (served by fallback)", err)
		}
		durs = append(durs, time.Since(start))
	}
	for i, d := range durs[:2] {
		if d < timeout || d > timeout+200*time.Millisecond {
			t.Errorf("call %d while closed took %v, want about the call timeout %v", i, d, timeout)
		}
	}
	for i, d := range durs[2:] {
		if d > 5*time.Millisecond {
			t.Errorf("call %d while open took %v, want well under the timeout (skipped)", i+2, d)
		}
	}
	if got, want := ev.failover("redis->memory:timeout"), 2; got != want {
		t.Errorf("timeout failovers: got %d, want %d", got, want)
	}
	if got, want := c.Statuses()[0].State, StateOpen; got != want {
		t.Errorf("state: got %v, want %v", got, want)
	}
	t.Logf("call durations: %v", durs)
}

func TestCallerCancelIsNotAFailure(t *testing.T) {
	primary := &fakeStore{}
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: &fakeStore{}, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{CallTimeout: -1, ConsecutiveFailures: 1, OpenFor: time.Hour}},
	})
	primary.set(nil, true)
	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(time.Millisecond, cancel)
		err := c.Take(ctx, limiter.CountAll, []limiter.Request{{Key: "k", Limit: testLimit, Hits: 1}}, make([]limiter.Result, 1))
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Take with cancelled caller: got %v, want ErrUnavailable wrapping context.Canceled", err)
		}
	}
	if got := c.Statuses()[0].State; got != StateClosed {
		t.Errorf("state after cancelled calls: got %v, want closed", got)
	}
}

func TestAllBackendsDown(t *testing.T) {
	a, b := &fakeStore{}, &fakeStore{}
	a.set(errDown, false)
	errMem := errors.New("memory exploded")
	b.set(errMem, false)
	c := newChain(t, Options{Backends: []Backend{{Name: "redis", Store: a}, {Name: "memory", Store: b, Local: true}}})
	err := take(t, c)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if !errors.Is(err, errMem) {
		t.Errorf("got %v, want it to wrap the last backend's error", err)
	}
	if want := "backend memory"; !strings.Contains(err.Error(), want) {
		t.Errorf("got %q, want it to name %q", err, want)
	}
}

func TestRequestErrorIsReturnedAndNotCounted(t *testing.T) {
	primary, fallback := &fakeStore{}, &fakeStore{}
	primary.set(fmt.Errorf("redisstore: %w: period 0s", limiter.ErrInvalidLimit), false)
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: fallback, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 1}},
	})
	for range 3 {
		err := take(t, c)
		if !errors.Is(err, limiter.ErrInvalidLimit) || errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrInvalidLimit and not ErrUnavailable", err)
		}
	}
	if got := fallback.calls.Load(); got != 0 {
		t.Errorf("fallback calls: got %d, want 0", got)
	}
	if got := c.Statuses()[0].State; got != StateClosed {
		t.Errorf("state: got %v, want closed", got)
	}
}

func TestPassiveHalfOpenBoundsProbeCalls(t *testing.T) {
	primary, fallback := &fakeStore{}, &fakeStore{}
	var ev events
	const openFor = 50 * time.Millisecond
	c := newChain(t, Options{
		// No Pinger: the breaker's half-open state lets real calls through.
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: fallback, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 1, OpenFor: openFor, HalfOpenProbes: 2}},
		Hooks:    ev.hooks(),
	})
	primary.set(errDown, false)
	take(t, c)
	if got := c.Statuses()[0].State; got != StateOpen {
		t.Fatalf("got %v, want open", got)
	}
	time.Sleep(openFor + 10*time.Millisecond)

	// Half-open: block the recovered primary so that concurrent calls pile up.
	block := make(chan struct{})
	primary.mu.Lock()
	primary.err, primary.block = nil, block
	primary.mu.Unlock()
	before := primary.calls.Load()
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			if err := take(t, c); err != nil {
				t.Errorf("Take: %v", err)
			}
		})
	}
	waitFor(t, 2*time.Second, "two probe calls in flight", func() bool { return primary.calls.Load()-before == 2 })
	waitFor(t, 2*time.Second, "four calls served by fallback", func() bool { return fallback.calls.Load() >= 5 })
	close(block)
	wg.Wait()
	if got, want := primary.calls.Load()-before, int64(2); got != want {
		t.Errorf("calls let through half-open: got %d, want %d", got, want)
	}
	if got, want := ev.stateLog(), []string{"redis:closed->open", "redis:open->half_open", "redis:half_open->closed"}; !slices.Equal(got, want) {
		t.Errorf("state changes: got %v, want %v", got, want)
	}
}

func TestActiveHealthDetectsDeadBackendWithoutTraffic(t *testing.T) {
	primary := &pingStore{}
	var ev events
	const interval = 20 * time.Millisecond
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: &fakeStore{}, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 3, OpenFor: time.Hour}, HealthCheck: HealthSettings{Interval: interval, Timeout: 10 * time.Millisecond}},
		Hooks:    ev.hooks(),
	})
	waitFor(t, time.Second, "first probe", func() bool { return primary.pings.Load() > 0 })
	if !c.Ready(ReadyPrimary) {
		t.Fatalf("Ready(primary) with a healthy primary: got false, want true")
	}
	primary.setPing(errDown, false)
	took := waitFor(t, 2*time.Second, "breaker open", func() bool { return c.Statuses()[0].State == StateOpen })
	if took > interval+500*time.Millisecond {
		t.Errorf("detection took %v, want within about one interval (%v)", took, interval)
	}
	t.Logf("dead backend detected without traffic after %v", took)
	if c.Ready(ReadyPrimary) || c.Ready(ReadyAll) || !c.Ready(ReadyAny) {
		t.Errorf("Ready with the primary open: got primary=%v all=%v any=%v, want false false true",
			c.Ready(ReadyPrimary), c.Ready(ReadyAll), c.Ready(ReadyAny))
	}
	st := c.Statuses()[0]
	if !st.Probed || !errors.Is(st.Err, errDown) {
		t.Errorf("status: got probed=%v err=%v, want probed with %v", st.Probed, st.Err, errDown)
	}
	// Open: no more probes.
	n := primary.pings.Load()
	time.Sleep(3 * interval)
	if got := primary.pings.Load(); got != n {
		t.Errorf("pings while open: got %d more, want none", got-n)
	}
	if take(t, c) != nil || primary.calls.Load() != 0 {
		t.Errorf("traffic reached the open primary %d times, want 0", primary.calls.Load())
	}
}

func TestActiveHealthHungProbeTimesOut(t *testing.T) {
	primary := &pingStore{}
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: &fakeStore{}, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 2, OpenFor: time.Hour}, HealthCheck: HealthSettings{Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond}},
	})
	primary.setPing(nil, true)
	waitFor(t, 2*time.Second, "breaker open", func() bool { return c.Statuses()[0].State == StateOpen })
	if err := c.Statuses()[0].Err; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("probe error: got %v, want deadline exceeded", err)
	}
}

func TestActiveHealthProbesBeforeTrafficReturns(t *testing.T) {
	primary, fallback := &pingStore{}, &fakeStore{}
	var ev events
	const (
		openFor  = 100 * time.Millisecond
		interval = 30 * time.Millisecond
	)
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: fallback, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 2, OpenFor: openFor, HalfOpenProbes: 3}, HealthCheck: HealthSettings{Interval: interval, Timeout: 10 * time.Millisecond}},
		Hooks:    ev.hooks(),
	})
	primary.set(errDown, false)
	primary.setPing(errDown, false)
	waitFor(t, 2*time.Second, "breaker open", func() bool { return c.Statuses()[0].State == StateOpen })

	// Steady traffic while the primary recovers.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := take(t, c); err != nil {
				t.Errorf("Take: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	time.Sleep(10 * time.Millisecond)
	primary.set(nil, false)
	primary.setPing(nil, false)
	healed := time.Now()
	primary.resetFirst()
	waitFor(t, 3*time.Second, "breaker closed", func() bool { return c.Statuses()[0].State == StateClosed })
	waitFor(t, time.Second, "traffic back on the primary", func() bool { return !primary.firstTake().IsZero() })
	close(stop)
	wg.Wait()

	opened, closed := ev.times()
	back := primary.firstTake()
	if back.Before(closed) {
		t.Errorf("traffic returned at %v, before the breaker closed at %v", back.Sub(healed), closed.Sub(healed))
	}
	if bound := openFor + interval + 100*time.Millisecond; closed.Sub(opened) > bound {
		t.Errorf("closed %v after opening, want within open_for + interval (+slack) = %v", closed.Sub(opened), bound)
	}
	if got, want := ev.stateLog(), []string{"redis:closed->open", "redis:open->half_open", "redis:half_open->closed"}; !slices.Equal(got, want) {
		t.Errorf("state changes: got %v, want %v", got, want)
	}
	t.Logf("open→closed %v; traffic back %v after the primary healed", closed.Sub(opened), back.Sub(healed))
}

func TestActiveHealthFailedHalfOpenProbeReopens(t *testing.T) {
	primary := &pingStore{}
	var ev events
	newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: &fakeStore{}, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 1, OpenFor: 30 * time.Millisecond}, HealthCheck: HealthSettings{Interval: 10 * time.Millisecond, Timeout: 10 * time.Millisecond}},
		Hooks:    ev.hooks(),
	})
	primary.setPing(errDown, false)
	waitFor(t, 2*time.Second, "reopened after a failed half-open probe", func() bool {
		return slices.Contains(ev.stateLog(), "redis:half_open->open")
	})
}

func TestCloseStopsProbes(t *testing.T) {
	primary := &pingStore{}
	c, err := New(Options{
		Backends: []Backend{{Name: "redis", Store: primary}},
		Settings: Settings{HealthCheck: HealthSettings{Interval: 5 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Second, "probes", func() bool { return primary.pings.Load() >= 2 })
	c.Close()
	c.Close() // idempotent
	n := primary.pings.Load()
	time.Sleep(30 * time.Millisecond)
	if got := primary.pings.Load(); got != n {
		t.Errorf("pings after Close: got %d more, want none", got-n)
	}
}

func TestHealthDisabledMeansPassive(t *testing.T) {
	primary := &pingStore{}
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}},
		Settings: Settings{HealthCheck: HealthSettings{Disabled: true}},
	})
	time.Sleep(20 * time.Millisecond)
	if got := primary.pings.Load(); got != 0 {
		t.Errorf("pings with health checks disabled: got %d, want 0", got)
	}
	if c.Statuses()[0].Probed {
		t.Errorf("status: got probed, want not probed")
	}
}

func TestFairShareOnFallback(t *testing.T) {
	primary, fallback := &fakeStore{}, &fakeStore{}
	c := newChain(t, Options{
		Backends: []Backend{{Name: "redis", Store: primary}, {Name: "memory", Store: fallback, Local: true, BackendSettings: BackendSettings{FairShare: true}}},
		Settings: Settings{Replicas: 3},
	})
	reqs := []limiter.Request{
		{Key: "a", Limit: limiter.Limit{Requests: 100, Period: time.Minute}, Hits: 1},
		{Key: "b", Limit: limiter.Limit{Requests: 10, Period: time.Second, Burst: 20, Algorithm: limiter.TokenBucket}, Hits: 1},
	}
	orig := slices.Clone(reqs)
	res := make([]limiter.Result, 2)
	if err := c.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
		t.Fatal(err)
	}
	if got := primary.reqs(); !slices.Equal(got, orig) {
		t.Errorf("primary got %v, want the limits unchanged %v", got, orig)
	}
	primary.set(errDown, false)
	if err := c.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
		t.Fatal(err)
	}
	got := fallback.reqs()
	want := []limiter.Request{
		{Key: "a", Limit: limiter.Limit{Requests: 33, Period: time.Minute}, Hits: 1},
		{Key: "b", Limit: limiter.Limit{Requests: 3, Period: time.Second, Burst: 6, Algorithm: limiter.TokenBucket}, Hits: 1},
	}
	if !slices.Equal(got, want) {
		t.Errorf("fallback got %v, want %v", got, want)
	}
	if !slices.Equal(reqs, orig) {
		t.Errorf("caller's requests modified: got %v, want %v", reqs, orig)
	}
	if got, want := res[0].Limit, int64(33); got != want {
		t.Errorf("result limit: got %d, want %d (the share enforced here)", got, want)
	}
}

func TestFairShare(t *testing.T) {
	fw := func(n int64) limiter.Limit { return limiter.Limit{Requests: n, Period: time.Minute} }
	tb := func(n, burst int64) limiter.Limit {
		return limiter.Limit{Requests: n, Period: time.Second, Burst: burst, Algorithm: limiter.TokenBucket}
	}
	tests := []struct {
		name     string
		limit    limiter.Limit
		replicas int64
		want     limiter.Limit
	}{
		{name: "one replica", limit: fw(100), replicas: 1, want: fw(100)},
		{name: "zero replicas", limit: fw(100), replicas: 0, want: fw(100)},
		{name: "exact", limit: fw(100), replicas: 4, want: fw(25)},
		{name: "rounds down", limit: fw(100), replicas: 3, want: fw(33)},
		{name: "at least one", limit: fw(2), replicas: 5, want: fw(1)},
		{name: "zero stays zero", limit: fw(0), replicas: 5, want: fw(0)},
		{name: "bucket rate and burst", limit: tb(10, 25), replicas: 4, want: tb(2, 6)},
		{name: "bucket no burst", limit: tb(10, 0), replicas: 4, want: tb(2, 0)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := FairShare(tc.limit, tc.replicas); got != tc.want {
				t.Errorf("FairShare(%v, %d): got %v, want %v", tc.limit, tc.replicas, got, tc.want)
			}
		})
	}
}

func TestReady(t *testing.T) {
	up, down := &fakeStore{}, &fakeStore{}
	down.set(errDown, false)
	newC := func(stores ...*fakeStore) *Chain {
		var bs []Backend
		for i, s := range stores {
			bs = append(bs, Backend{Name: fmt.Sprint("b", i), Store: s})
		}
		c := newChain(t, Options{Backends: bs, Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 1, OpenFor: time.Hour}}})
		take(t, c) // trips every down backend before the first up one
		take(t, c)
		return c
	}
	tests := []struct {
		name   string
		stores []*fakeStore
		policy Readiness
		want   bool
	}{
		{name: "any, all up", stores: []*fakeStore{up, up}, policy: ReadyAny, want: true},
		{name: "any, primary down", stores: []*fakeStore{down, up}, policy: ReadyAny, want: true},
		{name: "primary, primary down", stores: []*fakeStore{down, up}, policy: ReadyPrimary, want: false},
		{name: "primary, primary up", stores: []*fakeStore{up, up}, policy: ReadyPrimary, want: true},
		{name: "all, one down", stores: []*fakeStore{down, up}, policy: ReadyAll, want: false},
		{name: "all, all up", stores: []*fakeStore{up, up}, policy: ReadyAll, want: true},
		{name: "any, all down", stores: []*fakeStore{down, down}, policy: ReadyAny, want: false},
		{name: "always, all down", stores: []*fakeStore{down, down}, policy: ReadyAlways, want: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newC(tc.stores...)
			if got := c.Ready(tc.policy); got != tc.want {
				t.Errorf("Ready(%v): got %v, want %v (statuses %+v)", tc.policy, got, tc.want, c.Statuses())
			}
		})
	}
}

func TestLocalBackendAlwaysUsable(t *testing.T) {
	mem := &fakeStore{}
	mem.set(errDown, false)
	c := newChain(t, Options{Backends: []Backend{{Name: "memory", Store: mem, Local: true}}})
	for range 10 {
		if err := take(t, c); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("got %v, want ErrUnavailable", err)
		}
	}
	if got, want := mem.calls.Load(), int64(10); got != want {
		t.Errorf("local calls: got %d, want %d (no breaker)", got, want)
	}
	if !c.Ready(ReadyAll) {
		t.Errorf("Ready(all) with a local backend: got false, want true")
	}
}

func TestEnumText(t *testing.T) {
	fm := []struct {
		in      string
		want    FailureMode
		wantErr bool
	}{
		{in: "", want: FailEnvoy}, {in: "envoy", want: FailEnvoy}, {in: "open", want: FailOpen},
		{in: "closed", want: FailClosed}, {in: "deny", wantErr: true},
	}
	for _, tc := range fm {
		var got FailureMode
		err := got.UnmarshalText([]byte(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("UnmarshalText(%q): got %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if text, err := got.MarshalText(); tc.in != "" && !tc.wantErr && (err != nil || string(text) != tc.in) {
			t.Errorf("MarshalText(%v): got %q, %v; want %q", got, text, err, tc.in)
		}
	}
	rd := []struct {
		in      string
		want    Readiness
		wantErr bool
	}{
		{in: "", want: ReadyAny}, {in: "any", want: ReadyAny}, {in: "primary", want: ReadyPrimary},
		{in: "all", want: ReadyAll}, {in: "always", want: ReadyAlways}, {in: "some", wantErr: true},
	}
	for _, tc := range rd {
		var got Readiness
		err := got.UnmarshalText([]byte(tc.in))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("UnmarshalText(%q): got %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
		if text, err := got.MarshalText(); tc.in != "" && !tc.wantErr && (err != nil || string(text) != tc.in) {
			t.Errorf("MarshalText(%v): got %q, %v; want %q", got, text, err, tc.in)
		}
	}
}
