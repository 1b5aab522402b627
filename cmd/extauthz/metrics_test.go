package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/logging"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/wire"
)

// TestBackendMetricsRedis wires a [redis, memory] chain to the backend
// metrics, as serve does, and drives it against a real redis-server: the
// startup script load, a round trip, a reload after SCRIPT FLUSH, and a
// failover once Redis is killed.
func TestBackendMetricsRedis(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	// No probes and a generous call timeout, so that only the calls below
	// move the metrics on a busy machine.
	cfg, err := config.Load(strings.NewReader(fmt.Sprintf(`backends:
  - type: redis
    url: %q
  - type: memory
health_check: {disabled: true}
breaker: {call_timeout: 2s}
`, srv.URL())+testRules), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log := slogDiscard()
	bm, err := server.NewBackendMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := wire.NewBackends(cfg, log, bm)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()

	ctx := context.Background()
	counter := func(name string, labels ...string) float64 {
		t.Helper()
		return gathered(t, reg, name, labels...)
	}
	bs.LoadScripts(ctx, log, 2*time.Second)
	if got := counter("extauthz_redis_script_loads_total", "backend", "redis"); got != 1 {
		t.Errorf("after startup: got %v script loads, want 1", got)
	}

	take := func() {
		t.Helper()
		reqs := []limiter.Request{{Key: "metrics-test", Limit: limiter.Limit{Requests: 10, Period: time.Minute}, Hits: 1}}
		res := make([]limiter.Result, 1)
		if err := bs.Store.Take(ctx, limiter.CountAll, reqs, res); err != nil || !res[0].Allowed {
			t.Fatalf("Take: got %v, allowed %v; want admitted", err, res[0].Allowed)
		}
	}
	take()
	if got := counter("extauthz_backend_request_duration_seconds", "backend", "redis"); got != 1 {
		t.Errorf("after one call: got %v request duration samples, want 1", got)
	}
	if got := counter("extauthz_redis_script_loads_total", "backend", "redis"); got != 1 {
		t.Errorf("after one call on a loaded script: got %v script loads, want 1", got)
	}

	if err := srv.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	take()
	if got := counter("extauthz_redis_script_loads_total", "backend", "redis"); got != 2 {
		t.Errorf("after SCRIPT FLUSH: got %v script loads, want 2 (the NOSCRIPT reload)", got)
	}

	srv.Kill()
	take() // served by memory
	if got := counter("extauthz_backend_failovers_total", "from", "redis", "to", "memory", "reason", "error"); got != 1 {
		t.Errorf("with redis killed: got %v failovers for error, want 1", got)
	}
	if got := counter("extauthz_backend_errors_total", "backend", "redis", "kind", "connection"); got != 1 {
		t.Errorf("with redis killed: got %v connection errors, want 1 (errors: %s)", got, dump(t, reg, "extauthz_backend_errors_total"))
	}
	if got := counter("extauthz_backend_request_duration_seconds", "backend", "redis"); got != 3 {
		t.Errorf("got %v request duration samples, want 3 (the failed call included)", got)
	}
	if got := counter("extauthz_backend_breaker_state", "backend", "redis", "state", "closed"); got != 1 {
		t.Errorf("after one failure: got breaker closed %v, want 1", got)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestLoadScriptsDown checks that a Redis that is down at startup only
// costs a warning.
func TestLoadScriptsDown(t *testing.T) {
	cfg, err := config.Load(strings.NewReader("backends: [{type: redis, url: \"redis://127.0.0.1:1/0\"}, {type: memory}]\n"+testRules), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	bm, err := server.NewBackendMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	bs, err := wire.NewBackends(cfg, slogDiscard(), bm)
	if err != nil {
		t.Fatal(err)
	}
	defer bs.Close()
	var buf bytes.Buffer
	bs.LoadScripts(context.Background(), slog.New(slog.NewTextHandler(&buf, nil)), time.Second)
	if !strings.Contains(buf.String(), "level=WARN") || !strings.Contains(buf.String(), "backend=redis") {
		t.Errorf("got log %q, want a warning naming the backend", buf.String())
	}
	if got := gathered(t, reg, "extauthz_redis_script_loads_total", "backend", "redis"); got != 0 {
		t.Errorf("got %v script loads, want 0", got)
	}
}

func TestRedisLogger(t *testing.T) {
	tests := []struct {
		name  string
		level slog.Level
		lines []string // given to Printf, in order
		want  []string // log lines' level and msg, in order
	}{
		{name: "dial failures are warnings, throttled", level: slog.LevelDebug,
			lines: []string{"redis: connection pool: failed to dial after %d attempts: %v", "redis: connection pool: failed to dial after %d attempts: %v"},
			want:  []string{`level=WARN msg="redis client" line="connection pool: failed to dial after 5 attempts: dial tcp: refused" key=redis-client`}},
		{name: "other lines are debug", level: slog.LevelDebug,
			lines: []string{"sentinel: selected addr=%v masterAddr=%v"},
			want:  []string{`level=DEBUG msg="redis client" line="sentinel: selected addr=5 masterAddr=dial tcp: refused"`}},
		{name: "debug lines are dropped at info", level: slog.LevelInfo,
			lines: []string{"sentinel: selected addr=%v masterAddr=%v"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level:       tc.level,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
			}))
			l := redisLogger{log: log, throttle: &logging.Throttle{}}
			for _, line := range tc.lines {
				l.Printf(context.Background(), line, 5, "dial tcp: refused")
			}
			got := strings.Split(strings.TrimSpace(buf.String()), "\n")
			if buf.Len() == 0 {
				got = nil
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got log\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func dropTime(a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// gathered returns the value of the series of name whose labels include
// labels (name, value pairs): a counter or gauge's value, a histogram's
// sample count.
func gathered(t *testing.T, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

// dump renders the series of name, for failure messages.
func dump(t *testing.T, reg *prometheus.Registry, name string) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return fmt.Sprint(mf.GetMetric())
		}
	}
	return "none"
}

// TestServeBackendMetrics runs serve in process over a [redis, memory]
// chain and reads the backend metrics from /metrics: the script loaded at
// startup and the breaker closed.
func TestServeBackendMetrics(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var addrs [2]string
	for i := range addrs {
		port, err := redistest.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		addrs[i] = fmt.Sprintf("127.0.0.1:%d", port)
	}
	path := writeConfig(t, fmt.Sprintf("grpc_addr: %s\nhttp_addr: %s\nbackends: [{type: redis, url: %q}, {type: memory}]\n", addrs[0], addrs[1], srv.URL())+testRules)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- serve(ctx, []string{"--config", path}, func(string) string { return "" }, logs) }()

	want := []string{
		`extauthz_redis_script_loads_total{backend="redis"} 1`,
		`extauthz_backend_breaker_state{backend="redis",state="closed"} 1`,
		`extauthz_backend_failovers_total{from="redis",reason="error",to="memory"} 0`,
		`extauthz_backend_probes_total{backend="redis",result="success"}`,
		`extauthz_memory_backend_keys{backend="memory"} 0`,
	}
	var body string
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		body = scrape(t, "http://"+addrs[1]+"/metrics")
		missing := false
		for _, w := range want {
			missing = missing || !strings.Contains(body, w)
		}
		if !missing {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve did not stop")
	}
	if t.Failed() {
		t.Logf("logs:\n%s", logs.String())
	}
}

// scrape returns the body of a GET of url ("" while it cannot be reached).
func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	return string(b)
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes and reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
