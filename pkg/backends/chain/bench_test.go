package chain

import (
	"context"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// nopStore admits everything without work, so the benchmarks measure the
// chain alone.
type nopStore struct{}

func (nopStore) Take(_ context.Context, _ limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	for i := range reqs {
		res[i] = limiter.Result{Allowed: true}
	}
	return nil
}

func (nopStore) Ping(context.Context) error { return nil }

// boundingStore is a nopStore that bounds its own calls (callBounder)
// when accept is set, and records the bound it was given and the deadline
// of the last call's context.
type boundingStore struct {
	nopStore
	accept      bool
	bound       time.Duration
	hadDeadline bool
}

func (s *boundingStore) BoundCalls(d time.Duration) bool {
	s.bound = d
	return s.accept
}

func (s *boundingStore) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	_, s.hadDeadline = ctx.Deadline()
	return s.nopStore.Take(ctx, mode, reqs, res)
}

type failStore struct{}

func (failStore) Take(context.Context, limiter.Mode, []limiter.Request, []limiter.Result) error {
	return errDown
}

func benchChains(tb testing.TB) map[string]*Chain {
	mk := func(o Options) *Chain {
		c, err := New(o)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { c.Close() })
		return c
	}
	down := mk(Options{
		Backends: []Backend{{Name: "redis", Store: failStore{}}, {Name: "memory", Store: nopStore{}, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 1, OpenFor: time.Hour}},
	})
	reqs, res := benchReqs()
	down.Take(context.Background(), limiter.CountAll, reqs, res) // trip it
	return map[string]*Chain{
		// One local backend: the default chain.
		"local": mk(Options{Backends: []Backend{{Name: "memory", Store: nopStore{}, Local: true}}}),
		// A guarded backend without call timeout.
		"guarded": mk(Options{Backends: []Backend{{Name: "redis", Store: nopStore{}}}, Settings: Settings{Breaker: BreakerSettings{CallTimeout: -1}}}),
		// A guarded backend with the default call timeout.
		"guarded_timeout": mk(Options{Backends: []Backend{{Name: "redis", Store: nopStore{}}}}),
		// A guarded backend whose store bounds its own calls.
		"self_bounded": mk(Options{Backends: []Backend{{Name: "redis", Store: &boundingStore{accept: true}}}}),
		// An actively probed backend.
		"probed": mk(Options{Backends: []Backend{{Name: "redis", Store: nopStore{}}}, Settings: Settings{Breaker: BreakerSettings{CallTimeout: -1}, HealthCheck: HealthSettings{Interval: time.Hour}}}),
		// Primary open, served by the local fallback.
		"failed_over": down,
	}
}

func benchReqs() ([]limiter.Request, []limiter.Result) {
	return []limiter.Request{{Key: "k", Limit: testLimit, Hits: 1}}, make([]limiter.Result, 1)
}

func TestTakeAllocs(t *testing.T) {
	want := map[string]float64{"local": 0, "guarded": 0, "probed": 0, "failed_over": 0, "guarded_timeout": 4, "self_bounded": 0}
	for name, c := range benchChains(t) {
		reqs, res := benchReqs()
		ctx := context.Background()
		got := testing.AllocsPerRun(100, func() {
			if err := c.Take(ctx, limiter.CountAll, reqs, res); err != nil {
				t.Fatal(err)
			}
		})
		if got > want[name] {
			t.Errorf("%s: got %v allocs per Take, want at most %v", name, got, want[name])
		}
		if !res[0].Allowed {
			t.Errorf("%s: got a refusal, want the nop store's admission", name)
		}
	}

	// A caller deadline shorter than the call timeout needs no timer.
	c := benchChains(t)["guarded_timeout"]
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCallTimeout/2)
	defer cancel()
	reqs, res := benchReqs()
	if got := testing.AllocsPerRun(100, func() { c.Take(ctx, limiter.CountAll, reqs, res) }); got != 0 {
		t.Errorf("guarded_timeout with a shorter caller deadline: got %v allocs per Take, want 0", got)
	}
}

func BenchmarkTake(b *testing.B) {
	chains := benchChains(b)
	for _, name := range []string{"local", "guarded", "guarded_timeout", "self_bounded", "probed", "failed_over"} {
		c := chains[name]
		b.Run(name, func(b *testing.B) {
			reqs, res := benchReqs()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Take(ctx, limiter.CountAll, reqs, res); err != nil {
					b.Fatal(err)
				}
			}
			if !res[0].Allowed {
				b.Fatal("got a refusal, want the nop store's admission")
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				reqs, res := benchReqs()
				ctx := context.Background()
				for pb.Next() {
					if err := c.Take(ctx, limiter.CountAll, reqs, res); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
