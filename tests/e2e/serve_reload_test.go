package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// TestServeReloadsRules edits the rule file of a running server: the new
// limit applies without a restart; a broken edit is rejected and the old
// rules keep serving; SIGHUP reloads too.
func TestServeReloadsRules(t *testing.T) {
	dir := t.TempDir()
	cfg := WriteFile(t, dir, "extauthz.yaml", serverConfig)
	rules := WriteFile(t, dir, "rules/edge.yaml", edgeRules)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	limitOf := func() uint32 {
		t.Helper()
		resp, err := rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "edge",
			Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.1.1.1")}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit()
	}
	waitLimit := func(want uint32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for limitOf() != want {
			if time.Now().After(deadline) {
				t.Fatalf("limit still %d, want %d; logs:\n%s", limitOf(), want, p.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitLimit(3)

	WriteFile(t, dir, "rules/edge.yaml", strings.Replace(edgeRules, "requests_per_unit: 3", "requests_per_unit: 7", 1))
	waitLimit(7)

	WriteFile(t, dir, "rules/edge.yaml", "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: fortnight}\n")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), "config reload failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload failure logged:\n%s", p.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(p.Logs(), rules+":4:") {
		t.Errorf("the reload failure does not point at %s:4:", rules)
	}
	if got := limitOf(); got != 7 {
		t.Errorf("after a broken edit: got limit %d, want the old rules' 7", got)
	}
	if _, body := p.Get(t, "/metrics"); !strings.Contains(body, `extauthz_config_reloads_total{result="failure"}`) {
		t.Errorf("/metrics lacks the failed reload")
	}

	// A file event is debounced; SIGHUP reloads at once.
	WriteFile(t, dir, "rules/edge.yaml", strings.Replace(edgeRules, "requests_per_unit: 3", "requests_per_unit: 9", 1))
	p.Signal(t, syscall.SIGHUP)
	waitLimit(9)
	if p.Exited() {
		t.Fatal("SIGHUP stopped the server")
	}
}
