package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/internal/redistest"
)

// envRule is a reference rule file of domain edge admitting n per hour for
// each remote_address.
func envRule(n string) string {
	return "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: hour, requests_per_unit: " + n + "}\n"
}

// TestEnvCompat: the binary started with only envoyproxy/ratelimit's
// environment variables (no --config, no EXTAUTHZ_* variable) and a
// runtime directory serves the rules from Redis, and picks up new rules
// when the runtime root symlink is swapped, as the reference does with
// RUNTIME_WATCH_ROOT's default. config from-env prints a file that
// validates.
func TestEnvCompat(t *testing.T) {
	rdb := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	for v, n := range map[string]string{"v1": "2", "v2": "5"} {
		WriteFile(t, filepath.Join(dir, v, "ratelimit", "config"), "edge.yaml", envRule(n))
	}
	root := filepath.Join(dir, "current")
	if err := os.Symlink(filepath.Join(dir, "v1"), root); err != nil {
		t.Fatal(err)
	}
	promAddr := FreeAddr(t)
	env := []string{
		"USE_PROMETHEUS=true", "PROMETHEUS_ADDR=" + promAddr, "PROMETHEUS_PATH=/stats/prometheus",
		"USE_STATSD=false", "LOG_LEVEL=info", "BACKEND_TYPE=redis",
		"REDIS_SOCKET_TYPE=tcp", "REDIS_URL=" + rdb.Addr, "REDIS_TIMEOUT=2s",
		"RUNTIME_ROOT=" + root, "RUNTIME_SUBDIRECTORY=ratelimit", "RUNTIME_IGNOREDOTFILES=true",
	}

	t.Run("config from-env validates", func(t *testing.T) {
		out := Run(t, extauthzBin, env, "config", "from-env")
		if out.Code != 0 || !strings.Contains(out.Stdout, "# RUNTIME_ROOT") {
			t.Fatalf("config from-env: exit %d\n%s\n%s", out.Code, out.Stdout, out.Stderr)
		}
		file := WriteFile(t, t.TempDir(), "extauthz.yaml", out.Stdout)
		if v := Run(t, extauthzBin, nil, "validate", "--config", file); v.Code != 0 || !strings.Contains(v.Stdout, "OK (1 domain, 1 rule)") {
			t.Errorf("validate of the printed file: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
		}
	})

	p := Start(t, Options{Binary: extauthzBin, Env: env, AddrEnv: func(grpcAddr, httpAddr string) []string {
		gh, gp, _ := net.SplitHostPort(grpcAddr)
		hh, hp, _ := net.SplitHostPort(httpAddr)
		return []string{"GRPC_HOST=" + gh, "GRPC_PORT=" + gp, "HOST=" + hh, "PORT=" + hp}
	}})
	if !strings.Contains(p.Logs(), "serving from envoyproxy/ratelimit environment variables") {
		t.Errorf("no startup line naming the environment mode:\n%s", p.Logs())
	}
	if strings.Contains(p.Logs(), "Usage:") {
		t.Errorf("serve printed its usage although it runs from the environment:\n%s", p.Logs())
	}
	c := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	codes := []rlsv3.RateLimitResponse_Code{}
	for range 3 {
		resp := shouldRateLimit(t, c, "edge", "remote_address", "192.0.2.1")
		codes = append(codes, resp.GetOverallCode())
		if got := resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit(); got != 2 {
			t.Errorf("current limit %d, want 2 (v1)", got)
		}
	}
	want := []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT}
	if !slices.Equal(codes, want) {
		t.Errorf("codes %v, want %v", codes, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	keys, err := rdb.Client(t).Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Errorf("Redis holds no counter (%v): the decisions did not come from Redis", err)
	}

	// The reference's health path on HOST:PORT.
	if code, body := p.Get(t, "/healthcheck"); code != http.StatusOK {
		t.Errorf("GET /healthcheck: %d %q", code, body)
	}

	// USE_PROMETHEUS: the metrics on their own listener and path.
	resp, err := http.Get("http://" + promAddr + "/stats/prometheus")
	if err != nil {
		t.Fatalf("metrics listener: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `extauthz_requests_total{api="ratelimit",code="over_limit",domain="edge"} 1`) {
		t.Errorf("GET %s/stats/prometheus: %d\n%.2000s", promAddr, resp.StatusCode, body)
	}

	// The reference's deployment swaps the runtime root symlink.
	tmp := root + ".new"
	if err := os.Symlink(filepath.Join(dir, "v2"), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, root); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := shouldRateLimit(t, c, "edge", "remote_address", "192.0.2.2")
		if resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() == 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the swapped-in rule (5 per hour) is not served after 10s; logs:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The first address's counter survived the reload (same rule path) but
	// its limit is now 5: three hits so far, two more admitted.
	if got := shouldRateLimit(t, c, "edge", "remote_address", "192.0.2.1").GetOverallCode(); got != rlsv3.RateLimitResponse_OK {
		t.Errorf("after the swap: 192.0.2.1's 4th hit %v, want OK under the new limit 5", got)
	}
	// Without REDIS_HEALTH_CHECK_ACTIVE_CONNECTION the reference's health
	// check does not look at Redis: neither does /healthcheck here.
	rdb.Kill()
	if code, body := p.Get(t, "/healthcheck"); code != http.StatusOK {
		t.Errorf("GET /healthcheck with Redis down: %d %q, want 200 as the reference", code, body)
	}
}
