package lease

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// redisReplica returns a Redis store on srv, as one replica would open it
// (its own client), counting its round trips in calls. A non-nil clock is
// sent to Redis as the time of every decision.
func redisReplica(t *testing.T, srv *redistest.Server, clock *fakeClock, calls *atomic.Int64) *redisstore.Store {
	t.Helper()
	opts := redisstore.Options{OnCall: func(time.Duration, error) { calls.Add(1) }}
	if clock != nil {
		opts.Now, opts.ExtraTTL = clock.Now, time.Hour
	}
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, MaxRetries: -1, PoolSize: 32})
	rs, err := redisstore.New(client, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	return rs
}

// TestRedisFleetNeverOverAdmits: three replicas, each with its own Redis
// client and 16 goroutines, sharing one redis-server: the fleet admits no
// more than the limit per window (fixed, sliding) and no more than
// B + elapsed/T (token bucket).
func TestRedisFleetNeverOverAdmits(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	for _, alg := range []limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.TokenBucket} {
		t.Run(alg.String(), func(t *testing.T) {
			clock := &fakeClock{now: t0}
			var calls atomic.Int64
			var fleet []*Store
			for range 3 {
				fleet = append(fleet, newLease(t, redisReplica(t, srv, clock, &calls), Options{Now: clock.Now}))
			}
			// A limit of its own per algorithm: a fresh key.
			l := limiter.Limit{Requests: 1000 + int64(alg), Period: time.Minute, Algorithm: alg}
			fleetBound(t, fleet, clock, l, true)
			returned := int64(0)
			for _, s := range fleet {
				returned += s.Stats().Returned
			}
			t.Logf("%d Redis calls, %d hits returned", calls.Load(), returned)
		})
	}
}

// TestRedisReturnedHitsAreAdmitted: hits stranded in an idle replica's
// block are admitted by another replica once returned (an idle key, a
// replica shutting down), so the fleet admits exactly the limit; an
// evicted key's block is returned too, and so is the block of a key whose
// limit changed (a reload), under its old limit.
func TestRedisReturnedHitsAreAdmitted(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ls := &limiter.Lease{HotAfter: 1, Fraction: 0.5}
	limits := []limiter.Limit{
		{Requests: 1000, Period: time.Minute},
		{Requests: 1000, Period: time.Minute, Algorithm: limiter.SlidingWindow},
		{Requests: 1000, Period: 1000 * time.Hour, Algorithm: limiter.TokenBucket}, // T = 3.6s
	}
	for _, how := range []string{"idle", "close", "evicted", "changed"} {
		for _, l := range limits {
			t.Run(how+"/"+l.Algorithm.String(), func(t *testing.T) {
				clock := &fakeClock{now: t0.Add(10 * time.Second)}
				var calls atomic.Int64
				opts := Options{Now: clock.Now, ReturnAfter: -1}
				switch how {
				case "evicted":
					opts.MaxKeys, opts.ReturnAfter = 1, time.Hour // one key per shard; the returner never ticks
				case "changed":
					opts.ReturnAfter = time.Hour // a returner that never ticks (queued returns only)
				}
				a := newLease(t, redisReplica(t, srv, clock, &calls), opts)
				b := newLease(t, redisReplica(t, srv, clock, &calls), Options{Now: clock.Now, ReturnAfter: -1})
				key := "k " + how + " " + l.String()
				take1(t, a, key, l, ls, 1) // turns hot: a normal call
				take1(t, a, key, l, ls, 1) // a block of floor(0.5 × 999) = 499; one used
				drain := func() int64 {
					n := int64(0)
					for take1(t, b, key, l, ls, 1).Allowed {
						n++
					}
					return n
				}
				first := drain()
				if want := l.Requests - 2 - 498; first != want {
					t.Fatalf("b admitted %d before the return, want %d (498 stranded in a's block)", first, want)
				}
				clock.Advance(2 * time.Second)
				extra := int64(0) // hits admitted or counted under the changed limit by a
				switch how {
				case "idle":
					a.returnBlocks(context.Background(), time.Second)
				case "close":
					if err := a.Close(); err != nil {
						t.Fatal(err)
					}
				case "evicted":
					other := sameShard(t, a, key)
					take1(t, a, other, l, ls, 1) // turns hot and evicts key, whose block is queued
					a.returnBlocks(context.Background(), time.Hour)
				case "changed":
					l = changed(l)
					// The key's first request under the new limit queues the
					// old block's return; its block take is refused (the key
					// is full), and its normal call counts one hit (fixed
					// window: refused; sliding window: admitted, the limit
					// being one more; token bucket: refused, not counted).
					take1(t, a, key, l, ls, 1)
					if l.Algorithm != limiter.TokenBucket {
						extra = 1
					}
					a.returnBlocks(context.Background(), time.Hour)
				}
				if got := a.Stats().Returned; got != 498 {
					t.Errorf("a returned %d hits, want 498 (%+v)", got, a.Stats())
				}
				want := l.Requests
				if l.Algorithm == limiter.FixedWindow {
					want-- // the refusal that ended the first drain counted (CountAll)
				}
				if got := 2 + first + extra + drain(); got != want {
					t.Errorf("the fleet admitted %d, want exactly %d", got, want)
				}
			})
		}
	}
}

// gatedBlocks is a Redis store whose block takes, once counted, wait for
// gate to close before they answer.
type gatedBlocks struct {
	*redisstore.Store
	gate  chan struct{}
	taken atomic.Int64 // block takes counted
}

func (g *gatedBlocks) TakeBlock(ctx context.Context, r limiter.Request, res *limiter.Result) (int64, error) {
	mark, err := g.Store.TakeBlock(ctx, r, res)
	g.taken.Add(1)
	<-g.gate
	return mark, err
}

// waitFor polls ok until it holds, for 10s at most.
func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestRedisBlockOfChangedLimitReturned: a block taken while its key's limit
// changes (a reload during the take) is returned unused, and its request
// goes as a normal call; once the replica closes, the fleet admits exactly
// the new limit.
func TestRedisBlockOfChangedLimitReturned(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	clock := &fakeClock{now: t0.Add(10 * time.Second)}
	var calls atomic.Int64
	inner := &gatedBlocks{Store: redisReplica(t, srv, clock, &calls), gate: make(chan struct{})}
	a := newLease(t, inner, Options{Now: clock.Now, ReturnAfter: time.Hour})
	b := newLease(t, redisReplica(t, srv, clock, &calls), Options{Now: clock.Now, ReturnAfter: -1})
	ls := &limiter.Lease{HotAfter: 1, Fraction: 0.1} // blocks of 99 and 100: every request fits, in any order
	l := limiter.Limit{Requests: 1000, Period: time.Minute}
	l2 := changed(l)
	const key = "changing"
	take1(t, a, key, l, ls, 1) // turns hot: a normal call

	admitted := make(chan bool, 2)
	go func() { admitted <- take1(t, a, key, l, ls, 1).Allowed }() // a block of 99, held at the gate
	waitFor(t, "the block take", func() bool { return inner.taken.Load() == 1 })
	go func() { admitted <- take1(t, a, key, l2, ls, 1).Allowed }() // the reload's first request
	sh, _ := a.table.shard(key)
	waitFor(t, "the limit change", func() bool {
		sh.mu.Lock()
		defer sh.mu.Unlock()
		return sh.entries[key].limit == l2
	})
	close(inner.gate)
	for range 2 {
		if !<-admitted {
			t.Fatal("a request was refused")
		}
	}
	a.returnBlocks(context.Background(), time.Hour) // the queued return only
	if got := a.Stats().Returned; got != 99 {
		t.Fatalf("a returned %d hits, want the stale block's 99 (%+v)", got, a.Stats())
	}
	if err := a.Close(); err != nil { // returns the block of the new limit
		t.Fatal(err)
	}
	n := int64(3)
	for take1(t, b, key, l2, ls, 1).Allowed {
		n++
	}
	if n != l2.Requests {
		t.Errorf("the fleet admitted %d, want exactly %d", n, l2.Requests)
	}
}

// changed returns l with another limit on the same key: one more request
// per window (fixed, sliding); the token bucket's burst set to what it was
// (capacity and T unchanged, so the counts stay those of l).
func changed(l limiter.Limit) limiter.Limit {
	if l.Algorithm == limiter.TokenBucket {
		l.Burst = l.Capacity()
		return l
	}
	l.Requests++
	return l
}

// sameShard returns a key on key's shard of s's table.
func sameShard(t *testing.T, s *Store, key string) string {
	t.Helper()
	want, _ := s.table.shard(key)
	for i := range 100000 {
		k := fmt.Sprintf("other-%d", i)
		if sh, _ := s.table.shard(k); sh == want {
			return k
		}
	}
	t.Fatal("no key found on the same shard")
	return ""
}

// TestRedisCallsPerDecision: on the real clock, a hot key costs at most
// 0.05 Redis calls per decision; cold keys exactly one each.
func TestRedisCallsPerDecision(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var calls atomic.Int64
	// No returner: the hot key's block, idle for a second once the cold
	// keys run (slow under the race detector), would be returned in one
	// more call.
	s := newLease(t, redisReplica(t, srv, nil, &calls), Options{ReturnAfter: -1})
	hot := limiter.Limit{Requests: 10_000_000, Period: time.Hour}
	const n = 20000
	for i := range n {
		if r := take1(t, s, "hot", hot, &limiter.Lease{}, 1); !r.Allowed {
			t.Fatalf("decision %d refused: %+v", i, r)
		}
	}
	per := float64(calls.Load()) / n
	t.Logf("hot key: %d Redis calls for %d decisions (%.4f per decision), %+v", calls.Load(), n, per, s.Stats())
	if per > 0.05 {
		t.Errorf("hot key: %.4f Redis calls per decision, want at most 0.05", per)
	}

	calls.Store(0)
	cold := limiter.Limit{Requests: 100, Period: time.Hour}
	for k := range 3000 {
		take1(t, s, fmt.Sprintf("cold-%d", k), cold, &limiter.Lease{}, 1)
	}
	if got := calls.Load(); got != 3000 {
		t.Errorf("cold keys: %d Redis calls for 3000 decisions, want one each", got)
	}
}

// TestRedisFailover: a replica whose chain is [lease over Redis, memory].
// When Redis dies, the blocks already granted keep admitting (their hits
// were counted in Redis), block takes fail, and the chain falls back to
// memory, which admits the limit again on its own counter. So the replica
// admits at most R (the Redis window: blocks included) + R (the memory
// fallback's window), which is what the fallback allows without leasing.
func TestRedisFailover(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	clock := &fakeClock{now: t0}
	var calls atomic.Int64
	ls := newLease(t, redisReplica(t, srv, clock, &calls), Options{Now: clock.Now})
	c := fallbackChain(t, ls, clock)

	l := limiter.Limit{Requests: 1000, Period: time.Minute}
	lease := &limiter.Lease{HotAfter: 1}
	admitted := 0
	for range 300 {
		if take1(t, c, "k", l, lease, 1).Allowed {
			admitted++
		}
	}
	srv.Kill()
	for range 3000 {
		var res [1]limiter.Result
		err := c.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: "k", Limit: l, Hits: 1, Lease: lease}}, res[:])
		if err != nil {
			t.Fatalf("chain with a memory fallback failed: %v", err)
		}
		if res[0].Allowed {
			admitted++
		}
	}
	t.Logf("admitted %d, %+v", admitted, ls.Stats())
	if admitted > 2*int(l.Requests) {
		t.Errorf("admitted %d across a Redis failure, want at most %d (Redis's window and memory's)", admitted, 2*l.Requests)
	}
	if admitted < int(l.Requests) {
		t.Errorf("admitted %d, want the memory fallback to admit its own limit", admitted)
	}
}

var _ chain.LocalTaker = (*Store)(nil)

// fallbackChain is a failover chain of ls with a memory fallback, as
// extauthz builds one for a Redis backend.
func fallbackChain(t *testing.T, ls *Store, clock *fakeClock) *chain.Chain {
	t.Helper()
	c, err := chain.New(chain.Options{Backends: []chain.Backend{
		{Name: "redis", Store: ls},
		{Name: "memory", Store: newMem(t, clock), Local: true},
	}, Settings: chain.Settings{HealthCheck: chain.HealthSettings{Disabled: true}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestChainLocalAnswers: inside a chain, a hot key's answers from its block
// take the chain's local path (no breaker, no call timeout, no store call),
// and every request that the block cannot answer goes through Take.
func TestChainLocalAnswers(t *testing.T) {
	clock := &fakeClock{now: t0}
	inner := newMem(t, clock)
	ls := newLease(t, inner, Options{Now: clock.Now})
	c := fallbackChain(t, ls, clock)
	l := limiter.Limit{Requests: 1000, Period: time.Minute}
	lease := &limiter.Lease{HotAfter: 1, Fraction: 0.5}
	admitted := 0
	for range 3000 {
		if take1(t, c, "k", l, lease, 1).Allowed {
			admitted++
		}
	}
	st := ls.Stats()
	t.Logf("admitted %d, %d store calls, %+v", admitted, inner.calls.Load(), st)
	if admitted != int(l.Requests) {
		t.Errorf("admitted %d, want exactly the limit %d (one replica strands nothing)", admitted, l.Requests)
	}
	if st.Local < 900 {
		t.Errorf("%d local answers, want most of the 1000 admitted", st.Local)
	}
}

// BenchmarkChain: a hot key answered from its block through a failover
// chain (the production placement), against the memory store alone.
func BenchmarkChain(b *testing.B) {
	clock := &fakeClock{now: t0}
	mem, err := memstore.New(memstore.Options{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Close()
	ls, err := New(mem, Options{Now: clock.Now})
	if err != nil {
		b.Fatal(err)
	}
	c, err := chain.New(chain.Options{Backends: []chain.Backend{{Name: "redis", Store: ls}, {Name: "memory", Store: mem, Local: true}},
		Settings: chain.Settings{HealthCheck: chain.HealthSettings{Disabled: true}}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	l := limiter.Limit{Requests: 1 << 50, Period: time.Hour}
	for _, tc := range []struct {
		name  string
		store limiter.Store
		lease *limiter.Lease
	}{{"memory", mem, nil}, {"chain-lease", c, &limiter.Lease{}}} {
		b.Run(tc.name, func(b *testing.B) {
			reqs := []limiter.Request{{Key: "hot", Limit: l, Hits: 1, Lease: tc.lease}}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				res := make([]limiter.Result, 1)
				for pb.Next() {
					if err := tc.store.Take(context.Background(), limiter.CountAll, reqs, res); err != nil || !res[0].Allowed {
						b.Fatal(err, res[0])
					}
				}
			})
		})
	}
}
