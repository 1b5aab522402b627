package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// downStore is a remote backend that is down: every Take and Ping fails.
type downStore struct{ err error }

func (s downStore) Take(context.Context, limiter.Mode, []limiter.Request, []limiter.Result) error {
	return s.err
}

func (s downStore) Ping(context.Context) error { return s.err }

// newMetricsChain returns a chain [redis (down), memory] whose hooks feed
// m, and its registry's metrics.
func newMetricsChain(t *testing.T, m *BackendMetrics, health chain.HealthSettings) *chain.Chain {
	t.Helper()
	mem, err := memstore.New(memstore.Options{MaxKeys: 100, SweepInterval: -1})
	if err != nil {
		t.Fatalf("memstore.New: %v", err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	members := []chain.Backend{
		{Name: "redis", Store: downStore{err: errBackend}},
		{Name: "memory", Store: mem, Local: true},
	}
	c, err := chain.New(chain.Options{
		Backends: members,
		Settings: chain.Settings{Breaker: chain.BreakerSettings{ConsecutiveFailures: 2, OpenFor: time.Hour}, HealthCheck: health},
		Hooks:    m.ChainHooks(members),
	})
	if err != nil {
		t.Fatalf("chain.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestBackendMetricsFailover(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := mustBackendMetrics(t, reg)
	c := newMetricsChain(t, m, chain.HealthSettings{Disabled: true})

	// Before any call: series at zero, the breaker closed.
	wantState := func(state string) string {
		var b strings.Builder
		b.WriteString("# HELP extauthz_backend_breaker_state 1 for the current circuit-breaker state of each remote backend (closed, half_open, open), 0 for the others.\n")
		b.WriteString("# TYPE extauthz_backend_breaker_state gauge\n")
		for _, s := range []string{"closed", "half_open", "open"} {
			v := "0"
			if s == state {
				v = "1"
			}
			b.WriteString(`extauthz_backend_breaker_state{backend="redis",state="` + s + `"} ` + v + "\n")
		}
		return b.String()
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(wantState("closed")), "extauthz_backend_breaker_state"); err != nil {
		t.Errorf("at start: %v", err)
	}

	// Two failed calls trip the breaker (consecutive_failures 2); the third
	// skips redis uncalled. Every call is served by memory.
	reqs := []limiter.Request{{Key: "k", Limit: limiter.Limit{Requests: 10, Period: time.Minute}, Hits: 1}}
	res := make([]limiter.Result, 1)
	for i := range 3 {
		if err := c.Take(context.Background(), limiter.CountAll, reqs, res); err != nil || !res[0].Allowed {
			t.Fatalf("Take %d: got %v, allowed %v; want memory to admit", i+1, err, res[0].Allowed)
		}
	}
	want := `
# HELP extauthz_backend_breaker_transitions_total Circuit-breaker state changes, by backend and from and to state.
# TYPE extauthz_backend_breaker_transitions_total counter
extauthz_backend_breaker_transitions_total{backend="redis",from="closed",to="open"} 1
# HELP extauthz_backend_failovers_total Calls that moved on from one backend to the next, by reason (open, timeout, error).
# TYPE extauthz_backend_failovers_total counter
extauthz_backend_failovers_total{from="redis",reason="error",to="memory"} 2
extauthz_backend_failovers_total{from="redis",reason="open",to="memory"} 1
extauthz_backend_failovers_total{from="redis",reason="timeout",to="memory"} 0
` + wantState("open")
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"extauthz_backend_breaker_transitions_total", "extauthz_backend_failovers_total", "extauthz_backend_breaker_state"); err != nil {
		t.Error(err)
	}
}

func TestBackendMetricsProbes(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := mustBackendMetrics(t, reg)
	// The first probe round runs at once: a failed probe and, as the
	// backend is down, one more that trips the breaker.
	newMetricsChain(t, m, chain.HealthSettings{Interval: time.Hour, Timeout: time.Second})
	failures := m.probes.WithLabelValues("redis", probeFailure)
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(failures) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := testutil.ToFloat64(failures); got != 2 {
		t.Errorf("got %v failed probes, want 2 (consecutive_failures)", got)
	}
	if got := testutil.ToFloat64(m.probes.WithLabelValues("redis", probeSuccess)); got != 0 {
		t.Errorf("got %v successful probes of a down backend, want 0", got)
	}
	if got := testutil.CollectAndCount(m.probeTime, "extauthz_backend_probe_duration_seconds"); got != 1 {
		t.Errorf("got %d probe duration series, want 1 (redis)", got)
	}
	if got := histogramCount(t, reg, "extauthz_backend_probe_duration_seconds"); got != 2 {
		t.Errorf("got %d probe duration samples, want 2", got)
	}
	if got := testutil.ToFloat64(m.state.WithLabelValues("redis", "open")); got != 1 {
		t.Errorf("got breaker state open %v after failed probes, want 1", got)
	}
}

func TestRedisMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := mustBackendMetrics(t, reg).Redis("redis")
	r.Call(300*time.Microsecond, "")
	r.Call(10*time.Millisecond, "timeout")
	r.Call(time.Millisecond, "connection")
	r.Call(time.Millisecond, "connection")
	r.ScriptLoad()
	r.CacheHits(3)
	want := `
# HELP extauthz_backend_errors_total Failed round trips to a remote backend, by kind.
# TYPE extauthz_backend_errors_total counter
extauthz_backend_errors_total{backend="redis",kind="connection"} 2
extauthz_backend_errors_total{backend="redis",kind="timeout"} 1
# HELP extauthz_redis_local_cache_hits_total Requests answered by a Redis backend's local over-limit cache without a round trip.
# TYPE extauthz_redis_local_cache_hits_total counter
extauthz_redis_local_cache_hits_total{backend="redis"} 3
# HELP extauthz_redis_script_loads_total Times the Lua script was sent to a Redis backend in full (at startup, then after NOSCRIPT).
# TYPE extauthz_redis_script_loads_total counter
extauthz_redis_script_loads_total{backend="redis"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"extauthz_backend_errors_total", "extauthz_redis_local_cache_hits_total", "extauthz_redis_script_loads_total"); err != nil {
		t.Error(err)
	}
	if got := histogramCount(t, reg, "extauthz_backend_request_duration_seconds"); got != 4 {
		t.Errorf("got %d request duration samples, want 4 (failed calls included)", got)
	}
}

// TestBackendMetricsLint lints every backend metric with a series.
func TestBackendMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := mustBackendMetrics(t, reg)
	h := m.ChainHooks([]chain.Backend{{Name: "redis"}, {Name: "memory", Local: true}})
	h.StateChange("redis", chain.StateClosed, chain.StateOpen)
	h.Failover("redis", "memory", chain.ReasonTimeout)
	h.Probe("redis", time.Millisecond, nil)
	r := m.Redis("redis")
	r.Call(time.Millisecond, "timeout")
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(mfs); got != 9 {
		t.Errorf("got %d metric families, want 9", got)
	}
}

// histogramCount returns the sample count of the (single-series)
// histogram name in reg.
func histogramCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var n uint64
			for _, m := range mf.GetMetric() {
				n += m.GetHistogram().GetSampleCount()
			}
			return n
		}
	}
	return 0
}
