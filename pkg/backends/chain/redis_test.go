package chain

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/lease"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// These tests run the chain over a real redis-server, which they kill,
// restart on the same port, and pause. The Redis store here is a minimal
// fixed-window counter (one INCRBY + PEXPIRE pipeline per call): the subject
// is the chain's reaction to real client errors, not the Redis scripts,
// which redisstore tests itself.

// incrStore is a minimal Redis limiter.Store and Pinger.
type incrStore struct{ rdb *redis.Client }

// newClient returns a go-redis client tuned for the chain: no retries (the
// chain fails over instead), one dial attempt, and context deadlines bound
// I/O.
func newClient(t *testing.T, addr string, poolSize int) *redis.Client {
	rdb := redis.NewClient(&redis.Options{
		Addr:                  addr,
		DisableIdentity:       true,
		MaxRetries:            -1,
		DialTimeout:           50 * time.Millisecond,
		DialerRetries:         1, // the chain fails over instead
		ReadTimeout:           time.Second,
		WriteTimeout:          time.Second,
		ContextTimeoutEnabled: true, // the chain's call timeout bounds I/O
		PoolSize:              poolSize,
	})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func newIncrStore(t *testing.T, addr string, poolSize int) limiter.Store {
	return &incrStore{rdb: newClient(t, addr, poolSize)}
}

// newRedisStore returns the real Redis store.
func newRedisStore(t *testing.T, addr string, poolSize int) limiter.Store {
	s, err := redisstore.New(newClient(t, addr, poolSize), redisstore.Options{Prefix: "chaintest:"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newPipelinedStore is the Redis store as the server wires it: redisstore
// with its pipeline (which bounds its own calls, callBounder), under the
// lease layer.
func newPipelinedStore(t *testing.T, addr string) limiter.Store {
	s, err := redisstore.Open(redisstore.Config{URL: redisstore.URL("redis://" + addr), Prefix: "chaintest:"}, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	ls, err := lease.New(s, lease.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func (s *incrStore) Take(ctx context.Context, _ limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	cmds := make([]*redis.IntCmd, len(reqs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range reqs {
			cmds[i] = p.IncrBy(ctx, "chaintest:"+r.Key, r.Hits)
			p.PExpire(ctx, "chaintest:"+r.Key, r.Limit.Period)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("incrstore: %w", err)
	}
	for i, r := range reqs {
		n := cmds[i].Val()
		res[i] = limiter.Result{Allowed: n <= r.Limit.Requests, Limit: r.Limit.Requests, Remaining: max(0, r.Limit.Requests-n)}
	}
	return nil
}

func (s *incrStore) Ping(ctx context.Context) error { return s.rdb.Ping(ctx).Err() }

// tally wraps a store and records when it answered.
type tally struct {
	limiter.Store
	mu  sync.Mutex
	oks []time.Time
}

func (c *tally) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	err := c.Store.Take(ctx, mode, reqs, res)
	if err == nil {
		now := time.Now()
		c.mu.Lock()
		c.oks = append(c.oks, now)
		c.mu.Unlock()
	}
	return err
}

// BoundCalls passes the call timeout on to a store that bounds its calls.
func (c *tally) BoundCalls(d time.Duration) bool {
	b, ok := c.Store.(callBounder)
	return ok && b.BoundCalls(d)
}

func (c *tally) Ping(ctx context.Context) error {
	if p, ok := c.Store.(Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

// served returns how many calls it answered in [from, to).
func (c *tally) served(from, to time.Time) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.oks {
		if !t.Before(from) && t.Before(to) {
			n++
		}
	}
	return n
}

// firstAfter returns the first answer at or after t (zero if none).
func (c *tally) firstAfter(t time.Time) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	i, _ := slices.BinarySearchFunc(c.oks, t, func(a, b time.Time) int { return a.Compare(b) })
	if i < len(c.oks) {
		return c.oks[i]
	}
	return time.Time{}
}

// load drives the chain from several goroutines until stop, and records
// every call's latency and error.
type load struct {
	mu    sync.Mutex
	lat   []time.Duration
	fails []error
	calls atomic.Int64
}

func runLoad(c *Chain, workers int, every time.Duration, stop <-chan struct{}) (*load, *sync.WaitGroup) {
	l := &load{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			reqs := []limiter.Request{{Key: fmt.Sprint("w", w), Limit: limiter.Limit{Requests: 1 << 40, Period: time.Minute}, Hits: 1}}
			res := make([]limiter.Result, 1)
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				start := time.Now()
				err := c.Take(ctx, limiter.CountAll, reqs, res)
				d := time.Since(start)
				cancel()
				l.calls.Add(1)
				l.mu.Lock()
				l.lat = append(l.lat, d)
				if err != nil {
					l.fails = append(l.fails, err)
				}
				l.mu.Unlock()
			}
		})
	}
	return l, &wg
}

func (l *load) summary() (calls int, fails []error, p50, p99, maxLat time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := slices.Clone(l.lat)
	slices.Sort(s)
	if len(s) == 0 {
		return 0, l.fails, 0, 0, 0
	}
	return len(s), l.fails, s[len(s)/2], s[len(s)*99/100], s[len(s)-1]
}

func newRedisChain(t *testing.T, addr string, store limiter.Store, ev *events, o Options) (*Chain, *tally, *tally) {
	mem, err := memstore.New(memstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mem.Close() })
	red, fb := &tally{Store: store}, &tally{Store: mem}
	o.Backends = []Backend{{Name: "redis", Addr: addr, Store: red}, {Name: "memory", Store: fb, Local: true}}
	o.Hooks = ev.hooks()
	return newChain(t, o), red, fb
}

func TestRedisKillAndRestart(t *testing.T) {
	tests := []struct {
		name     string
		store    func(t *testing.T, addr string, poolSize int) limiter.Store
		poolSize int
		outage   time.Duration
		// dialBackoff is added to the recovery bound: once PoolSize dials
		// in a row have failed, go-redis stops dialing and retries in the
		// background once a second, failing fast meanwhile.
		dialBackoff time.Duration
	}{
		{name: "short outage", store: newIncrStore, poolSize: 8, outage: 300 * time.Millisecond},
		{name: "saturated pool", store: newIncrStore, poolSize: 2, outage: 1500 * time.Millisecond, dialBackoff: time.Second},
		{name: "redisstore", store: newRedisStore, poolSize: 8, outage: 300 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			killAndRestart(t, tc.store, tc.poolSize, tc.outage, tc.dialBackoff)
		})
	}
}

func killAndRestart(t *testing.T, mk func(*testing.T, string, int) limiter.Store, poolSize int, outage, dialBackoff time.Duration) {
	srv := redistest.Start(t, redistest.Options{})
	const (
		openFor  = 500 * time.Millisecond
		interval = 100 * time.Millisecond
	)
	var ev events
	c, red, mem := newRedisChain(t, srv.Addr, mk(t, srv.Addr, poolSize), &ev, Options{
		Settings: Settings{Breaker: BreakerSettings{CallTimeout: 50 * time.Millisecond, ConsecutiveFailures: 3, OpenFor: openFor}, HealthCheck: HealthSettings{Interval: interval, Timeout: 50 * time.Millisecond}},
	})
	stop := make(chan struct{})
	l, wg := runLoad(c, 4, 4*time.Millisecond, stop)

	time.Sleep(300 * time.Millisecond)
	killed := time.Now()
	srv.Kill()
	waitFor(t, 5*time.Second, "breaker open after SIGKILL", func() bool { return c.Statuses()[0].State == StateOpen })
	opened, _ := ev.times()
	firstMem := mem.firstAfter(killed)
	time.Sleep(outage)

	restarted := time.Now()
	srv.Restart(t)
	waitFor(t, 5*time.Second, "traffic back on redis", func() bool { return !red.firstAfter(restarted).IsZero() })
	back := red.firstAfter(restarted)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	calls, fails, p50, p99, maxLat := l.summary()
	if len(fails) > 0 {
		t.Errorf("failed calls: got %d of %d, want 0; first: %v", len(fails), calls, fails[0])
	}
	if firstMem.IsZero() || firstMem.Sub(killed) > 200*time.Millisecond {
		t.Errorf("memory took over %v after SIGKILL, want promptly", firstMem.Sub(killed))
	}
	// Traffic resumes at most OpenFor + one probe interval after the breaker
	// opened, or right after the restart if that came later (plus slack for
	// the redis-server start and a loaded machine).
	bound := opened.Add(openFor + interval)
	if restarted.After(bound) {
		bound = restarted
	}
	if dialBackoff > 0 {
		// Probes fail fast until go-redis dials again; the last failed one
		// reopens the breaker for another open_for.
		bound = restarted.Add(dialBackoff + openFor + interval)
	}
	bound = bound.Add(300 * time.Millisecond)
	if back.After(bound) {
		t.Errorf("traffic back on redis %v after restart, want by %v (open_for %v + interval %v after opening)",
			back.Sub(restarted), bound.Sub(restarted), openFor, interval)
	}
	if n := mem.served(back.Add(50*time.Millisecond), time.Now()); n != 0 {
		t.Errorf("memory served %d calls after redis was back, want 0", n)
	}
	stats, err := srv.CommandStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if stats["incrby"]+stats["evalsha"] == 0 || stats["ping"] == 0 {
		t.Errorf("commandstats after restart: got %v, want incrby or evalsha, and ping calls", stats)
	}
	t.Logf("pool %d, outage %v: calls %d, failed %d, p50 %v, p99 %v, max %v; memory first served %v after SIGKILL; breaker open %v after SIGKILL; redis back %v after restart; states %v; commandstats since restart incrby=%d evalsha=%d ping=%d",
		poolSize, outage, calls, len(fails), p50, p99, maxLat, firstMem.Sub(killed), opened.Sub(killed), back.Sub(restarted), ev.stateLog(), stats["incrby"], stats["evalsha"], stats["ping"])
}

// A paused Redis costs each call at most the call timeout, whether the
// chain bounds the call with a context (go-redis) or the store bounds it
// itself (the pipeline).
func TestRedisPauseBoundsLatency(t *testing.T) {
	for _, tc := range []struct {
		name    string
		store   func(t *testing.T, addr string) limiter.Store
		bounded bool
	}{
		{"context", func(t *testing.T, addr string) limiter.Store { return newRedisStore(t, addr, 8) }, false},
		{"self_bounded", newPipelinedStore, true},
	} {
		t.Run(tc.name, func(t *testing.T) { redisPauseBoundsLatency(t, tc.store, tc.bounded) })
	}
}

func redisPauseBoundsLatency(t *testing.T, store func(t *testing.T, addr string) limiter.Store, bounded bool) {
	srv := redistest.Start(t, redistest.Options{})
	const callTimeout = 30 * time.Millisecond
	var ev events
	c, red, _ := newRedisChain(t, srv.Addr, store(t, srv.Addr), &ev, Options{
		Settings: Settings{Breaker: BreakerSettings{CallTimeout: callTimeout, ConsecutiveFailures: 3, OpenFor: 300 * time.Millisecond}, HealthCheck: HealthSettings{Interval: 100 * time.Millisecond, Timeout: 50 * time.Millisecond}},
	})
	if got := c.backends[0].bounded; got != bounded {
		t.Fatalf("store bounds its own calls: %v, want %v", got, bounded)
	}
	stop := make(chan struct{})
	l, wg := runLoad(c, 4, 4*time.Millisecond, stop)
	time.Sleep(200 * time.Millisecond)

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	took := waitFor(t, 5*time.Second, "breaker open while paused", func() bool { return c.Statuses()[0].State != StateClosed })
	time.Sleep(time.Second) // half-open probes keep timing out
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	waitFor(t, 5*time.Second, "traffic back on redis", func() bool { return !red.firstAfter(resumed).IsZero() })
	back := red.firstAfter(resumed)
	close(stop)
	wg.Wait()

	calls, fails, p50, p99, maxLat := l.summary()
	if len(fails) > 0 {
		t.Errorf("failed calls: got %d of %d, want 0; first: %v", len(fails), calls, fails[0])
	}
	if bound := callTimeout + 50*time.Millisecond; maxLat > bound {
		t.Errorf("max latency %v, want bounded by the call timeout %v (+slack: %v)", maxLat, callTimeout, bound)
	}
	if got := ev.failover("redis->memory:timeout"); got == 0 {
		t.Errorf("timeout failovers: got 0, want some")
	}
	if !slices.Contains(ev.stateLog(), "redis:closed->open") {
		t.Errorf("states: got %v, want the breaker to open", ev.stateLog())
	}
	t.Logf("calls %d, failed %d, p50 %v, p99 %v, max %v; breaker left closed %v after SIGSTOP; redis back %v after SIGCONT; timeouts %d; states %v",
		calls, len(fails), p50, p99, maxLat, took, back.Sub(resumed), ev.failover("redis->memory:timeout"), ev.stateLog())
}

func TestRedisHealthTable(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	dead := redistest.Start(t, redistest.Options{})
	dead.Kill()
	mem, err := memstore.New(memstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	st := Check(context.Background(), []Backend{
		{Name: "redis", Addr: srv.Addr, Store: newIncrStore(t, srv.Addr, 8)},
		{Name: "redis-dead", Addr: dead.Addr, Store: newIncrStore(t, dead.Addr, 8)},
		{Name: "memory", Store: mem, Local: true},
	}, 100*time.Millisecond)
	if !st[0].Usable() || st[1].Usable() || !st[2].Usable() {
		t.Errorf("usable: got %v %v %v, want true false true", st[0].Usable(), st[1].Usable(), st[2].Usable())
	}
	var nerr interface{ Timeout() bool }
	if st[1].Err == nil || errors.As(st[1].Err, &nerr) && nerr.Timeout() {
		t.Errorf("dead redis: got %v, want connection refused", st[1].Err)
	}
}
