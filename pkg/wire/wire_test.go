package wire

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/lease"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/server"
)

const rules = `domains:
  - domain: d
    descriptors:
      - key: k
        rate_limit: {unit: minute, requests_per_unit: 1}
`

func load(t *testing.T, src string) *config.Config {
	t.Helper()
	cfg, err := config.Load(strings.NewReader(src+rules), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestBackendsChain: two Redis backends and a memory one form a chain named
// by type (the second "redis#2"); killing the first reports its breaker
// opening on Events and the chain fails over; Close may be repeated.
func TestBackendsChain(t *testing.T) {
	a, b := redistest.Start(t, redistest.Options{}), redistest.Start(t, redistest.Options{})
	cfg := load(t, fmt.Sprintf(`backends: [{type: redis, url: %q}, {type: redis, url: %q}, {type: memory}]
breaker: {call_timeout: 1s, consecutive_failures: 1}
health_check: {interval: 50ms}
`, a.URL(), b.URL()))
	bs, err := NewBackends(cfg, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	var names []string
	for _, st := range bs.Chain.Statuses() {
		names = append(names, st.Name)
	}
	if got := strings.Join(names, ","); got != "redis,redis#2,memory" {
		t.Fatalf("backends %q, want redis,redis#2,memory", got)
	}
	bs.LoadScripts(context.Background(), slog.New(slog.DiscardHandler), 2*time.Second)

	a.Kill()
	reqs := []limiter.Request{{Key: "k", Limit: limiter.Limit{Requests: 5, Period: time.Minute}, Hits: 1}}
	res := make([]limiter.Result, 1)
	if err := bs.Store.Take(context.Background(), limiter.CountAll, reqs, res); err != nil || !res[0].Allowed {
		t.Fatalf("Take with the first backend down: %v %+v, want a failover answer", err, res[0])
	}
	select {
	case ev := <-bs.Events():
		if ev.Backend != "redis" || ev.To != chain.StateOpen {
			t.Errorf("event %+v, want redis opening", ev)
		}
	case <-time.After(10 * time.Second):
		t.Error("no state change event after the first backend died")
	}
	bs.Close()
	bs.Close()
}

func TestBackendsErrors(t *testing.T) {
	cfg := load(t, "")
	cfg.Backends = []config.Backend{{Type: "memory"}, {Type: "nosuch"}}
	_, err := NewBackends(cfg, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `backends[1] (nosuch): type "nosuch" is not supported`) {
		t.Errorf("unknown type: %v, want it named with its index", err)
	}
	bs, err := NewBackends(load(t, ""), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	if bs.Chain != nil || len(bs.Memory) != 1 || bs.Memory["memory"] == nil || bs.Ready() != nil {
		t.Errorf("default: chain %v, memory %v, ready %v; want a lone ready memory store", bs.Chain, bs.Memory, bs.Ready())
	}
}

// TestBackendsLease: a Redis backend is wrapped in the lease layer (so a
// rule with rate_limit.lease leases hot keys from it) and is still probed
// by the chain through it; memory is not wrapped.
func TestBackendsLease(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := load(t, fmt.Sprintf("backends: [{type: redis, url: %q}, {type: memory}]\n", srv.URL()))
	reg := prometheus.NewRegistry()
	bm, err := server.NewBackendMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := NewBackends(cfg, slog.New(slog.DiscardHandler), bm)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	ls, ok := bs.Members[0].Store.(*lease.Store)
	if !ok {
		t.Fatalf("redis member store is %T, want *lease.Store", bs.Members[0].Store)
	}
	if _, ok := bs.Members[1].Store.(*lease.Store); ok {
		t.Error("memory member is leased")
	}
	for _, st := range chain.Check(context.Background(), bs.Members, 2*time.Second) {
		if st.Name == "redis" && st.Err != nil {
			t.Errorf("redis probe through the lease layer: %v", st.Err)
		}
	}
	l := limiter.Limit{Requests: 1_000_000, Period: time.Minute}
	lz := &limiter.Lease{HotAfter: 1}
	res := make([]limiter.Result, 1)
	for range 100 {
		if err := bs.Store.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: "hot", Limit: l, Hits: 1, Lease: lz}}, res); err != nil || !res[0].Allowed {
			t.Fatalf("Take: %v %+v", err, res[0])
		}
	}
	if st := ls.Stats(); st.Blocks != 1 || st.Local != 99 {
		t.Errorf("lease stats %+v, want one block and 99 local answers (the first turns the key hot)", st)
	}
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "result" {
					name += "/" + lp.GetValue()
				}
			}
			got[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	for name, want := range map[string]float64{
		"extauthz_lease_local_total": 99, "extauthz_lease_blocks_total/granted": 1, "extauthz_lease_blocks_total/refused": 0,
		"extauthz_lease_evictions_total": 0, "extauthz_lease_keys": 1, "extauthz_lease_returned_total": 0,
	} {
		if v, ok := got[name]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	// Closing returns the block's unused hits to Redis before closing its
	// client: Redis then counts only the 100 hits admitted.
	bs.Close()
	if st := ls.Stats(); st.Returned != 99_999-99 {
		t.Errorf("returned %d hits at Close, want %d (a block of 99 999, 99 used)", st.Returned, 99_999-99)
	}
	rs, err := redisstore.New(redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true}), redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	if err := rs.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: "hot", Limit: l}}, res); err != nil || res[0].Remaining != l.Requests-100 {
		t.Errorf("after Close Redis reads %+v (%v), want %d remaining", res[0], err, l.Requests-100)
	}
}
