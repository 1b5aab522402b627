package e2e

import (
	"context"
	"fmt"
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

	// A file event is debounced; SIGHUP reloads at once. The new rule
	// leases, which the memory backend cannot: served, and logged.
	WriteFile(t, dir, "rules/edge.yaml", strings.Replace(edgeRules, "requests_per_unit: 3", "requests_per_unit: 9\n      lease: {}", 1))
	p.Signal(t, syscall.SIGHUP)
	waitLimit(9)
	if p.Exited() {
		t.Fatal("SIGHUP stopped the server")
	}
	if want := rules + ":4:5: rule edge.remote_address: lease has no effect: chain default has no redis backend"; !strings.Contains(p.Logs(), want) {
		t.Errorf("the reload does not log %q:\n%s", want, p.Logs())
	}
}

// TestServeReloadRefusedRetries edits the server file into a config that
// loads and validates but that the running server refuses (an authz:
// section added, which needs a restart): the old config keeps serving, the
// refusal is logged and counted as a failed reload, and a SIGHUP on the
// same file tries it again (it was not taken as in service, so it is not
// "unchanged"). Once the file is fixed, SIGHUP applies it.
func TestServeReloadRefusedRetries(t *testing.T) {
	const base = `domains:
  - domain: web
    descriptors:
      - key: remote_address
        rate_limit: {unit: hour, requests_per_unit: %d}
`
	const authz = `authz:
  domain: web
  descriptors:
    - entries: [{from: client_ip}]
`
	const (
		failures  = `extauthz_config_reloads_total{result="failure"}`
		successes = `extauthz_config_reloads_total{result="success"}`
		unchanged = `extauthz_config_reloads_total{result="unchanged"}`
	)
	dir := t.TempDir()
	cfg := WriteFile(t, dir, "extauthz.yaml", fmt.Sprintf(base, 3))
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	limitOf := func() uint32 {
		t.Helper()
		resp, err := rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "web",
			Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.1.1.1")}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit()
	}
	// waitMetric waits until the sample name exceeds above.
	waitMetric := func(name string, above float64, what string) map[string]float64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			m := soakMetrics(t, p)
			if m[name] > above {
				return m
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s is %v, want more than %v (unchanged: %v); logs:\n%s", what, name, m[name], above, m[unchanged], p.Logs())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if got := limitOf(); got != 3 {
		t.Fatalf("at start: got limit %d, want 3", got)
	}

	// The file event loads the refused config.
	WriteFile(t, dir, "extauthz.yaml", fmt.Sprintf(base, 7)+authz)
	m := waitMetric(failures, 0, "after adding an authz: section")
	if logs := p.Logs(); !strings.Contains(logs, "config reload refused") || !strings.Contains(logs, "needs a restart") {
		t.Errorf("the refusal is not logged with its reason:\n%s", logs)
	}
	if got := limitOf(); got != 3 {
		t.Errorf("after a refused config: got limit %d, want the old config's 3", got)
	}

	// The same file again: refused again, not found unchanged.
	p.Signal(t, syscall.SIGHUP)
	waitMetric(failures, m[failures], "SIGHUP on the refused config")
	if got := limitOf(); got != 3 {
		t.Errorf("after a second refusal: got limit %d, want the old config's 3", got)
	}

	// Fixed: applied.
	before := soakMetrics(t, p)[successes]
	WriteFile(t, dir, "extauthz.yaml", fmt.Sprintf(base, 7))
	p.Signal(t, syscall.SIGHUP)
	waitMetric(successes, before, "SIGHUP on the fixed config")
	if got := limitOf(); got != 7 {
		t.Errorf("after the fix: got limit %d, want 7", got)
	}
	if p.Exited() {
		t.Fatal("a refused reload stopped the server")
	}
}
