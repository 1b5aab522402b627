package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/internal/redistest"
)

// insightConfig limits each client IP to 5 requests a minute in domain
// "rls" (RateLimitService) and "web" (ext_authz Check, client IP from the
// peer address); backends is a backends section ("" for memory).
func insightConfig(backends string) string {
	return backends + `
insight:
  flush_interval: 1s
domains:
  - domain: rls
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 5}
  - domain: web
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 5}
authz:
  domain: web
  descriptors:
    - name: per_ip
      entries: [{from: client_ip}]
`
}

// offendersAnswer is the part of /api/v1/offenders the tests read.
type offendersAnswer struct {
	Scope      string `json:"scope"`
	Replicas   int    `json:"replicas"`
	Window     string `json:"window"`
	ErrorBound int64  `json:"error_bound"`
	Offenders  []struct {
		Domain, Rule, Value string
		Refused, Admitted   int64
		FirstSeen           time.Time `json:"first_seen"`
		LastSeen            time.Time `json:"last_seen"`
	} `json:"offenders"`
}

func getJSON(t *testing.T, p *Process, path string, v any) {
	t.Helper()
	code, body := p.Get(t, path)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// insightTraffic sends, on both APIs, 3 requests from each of 60 light
// clients and 20 from each of three heavy ones (heavy+"1" to heavy+"3"),
// the heavy ones with more requests each.
func insightTraffic(t *testing.T, p *Process, light, heavy string) {
	t.Helper()
	ctx := context.Background()
	conn := p.Dial(t)
	rls := rlsv3.NewRateLimitServiceClient(conn)
	az := authzClient(t, p)
	send := func(ip string) {
		if _, err := rls.ShouldRateLimit(ctx, rlsRequest("rls", "remote_address", ip)); err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
		if _, err := az.Check(ctx, authzCheckReq(ip, "/")); err != nil {
			t.Fatalf("Check: %v", err)
		}
	}
	for i := range 60 {
		for range 3 {
			send(fmt.Sprintf("%s%d", light, i))
		}
	}
	for h := 1; h <= 3; h++ {
		for range 15 + 5*h {
			send(fmt.Sprintf("%s%d", heavy, h))
		}
	}
}

// topThree checks that the first three offenders of domain are the heavy
// ones, most refused first.
func topThree(t *testing.T, a offendersAnswer, domain, heavy string) {
	t.Helper()
	if len(a.Offenders) < 3 {
		t.Fatalf("%s: offenders %+v", domain, a.Offenders)
	}
	for i := range 3 {
		o := a.Offenders[i]
		if want := fmt.Sprintf("%s%d", heavy, 3-i); o.Value != want || o.Domain != domain || o.Refused < 10 {
			t.Errorf("%s: offender %d = %+v, want %s with its refusals", domain, i, o, want)
		}
		if o.FirstSeen.IsZero() || o.LastSeen.IsZero() {
			t.Errorf("%s: offender %d has no first/last seen: %+v", domain, i, o)
		}
	}
	if len(a.Offenders) > 3 && a.Offenders[3].Refused > a.ErrorBound {
		t.Errorf("%s: a light client is refused: %+v", domain, a.Offenders[3])
	}
}

func TestInsightOffenders(t *testing.T) {
	awayFromMinuteEnd(15 * time.Second)
	dir := t.TempDir()
	cfg := WriteFile(t, dir, "extauthz.yaml", insightConfig(""))
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	insightTraffic(t, p, "198.51.100.", "203.0.113.")
	for _, domain := range []string{"rls", "web"} {
		var a offendersAnswer
		getJSON(t, p, "/api/v1/offenders?window=5m&limit=10&domain="+domain, &a)
		if a.Scope != "replica" || a.Replicas != 1 || a.Window != "5m" {
			t.Errorf("scope %q replicas %d window %q", a.Scope, a.Replicas, a.Window)
		}
		topThree(t, a, domain, "203.0.113.")
	}
	var rules struct {
		Rules []struct {
			Domain string
			Totals struct{ Admitted, Refused int64 }
		}
	}
	getJSON(t, p, "/api/v1/rules", &rules)
	if len(rules.Rules) != 2 {
		t.Fatalf("rules %+v", rules)
	}
	for _, r := range rules.Rules {
		// 60 light clients x 3 + 3 heavy x 5 admitted; (20-5)+(25-5)+(30-5) refused.
		if r.Totals.Admitted != 195 || r.Totals.Refused != 60 {
			t.Errorf("%s totals %+v, want 195 admitted 60 refused", r.Domain, r.Totals)
		}
	}
	if code, body := p.Get(t, "/api/v1/offenders?window=3m"); code != 400 || !strings.Contains(body, "5m, 1h, 24h or 7d") {
		t.Errorf("bad window: %d %s", code, body)
	}
}

// TestInsightFleet: two replicas sharing Redis each answer for both, and
// a replica started after the others stopped still sees their history.
func TestInsightFleet(t *testing.T) {
	awayFromMinuteEnd(20 * time.Second)
	srv := redistest.Start(t, redistest.Options{})
	dir := t.TempDir()
	cfg := WriteFile(t, dir, "extauthz.yaml", insightConfig("backends:\n  - type: redis\n    url: redis://"+srv.Addr+"/0\nbreaker: {call_timeout: 2s}\n"))
	a := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	b := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	insightTraffic(t, a, "198.51.100.", "203.0.113.")
	insightTraffic(t, b, "192.0.2.", "192.0.2.20")
	for name, p := range map[string]*Process{"a": a, "b": b} {
		var ans offendersAnswer
		deadline := time.Now().Add(10 * time.Second)
		for {
			getJSON(t, p, "/api/v1/offenders?window=5m&limit=100&domain=rls", &ans)
			if ans.Replicas == 2 && has(ans, "203.0.113.3") && has(ans, "192.0.2.203") || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if ans.Scope != "fleet" || ans.Replicas != 2 {
			t.Errorf("%s: scope %q replicas %d, want fleet 2", name, ans.Scope, ans.Replicas)
		}
		for _, v := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "192.0.2.201", "192.0.2.202", "192.0.2.203"} {
			if !has(ans, v) {
				t.Errorf("%s does not list %s: %+v", name, v, ans.Offenders)
			}
		}
		if len(ans.Offenders) >= 6 {
			for _, o := range ans.Offenders[:6] {
				if o.Refused < 10 {
					t.Errorf("%s: the six heavy clients do not rank first: %+v", name, ans.Offenders[:7])
					break
				}
			}
		}
	}

	// History survives: stop both, start a third on the same Redis.
	for _, p := range []*Process{a, b} {
		p.Signal(t, syscall.SIGTERM)
		if code := p.Wait(t, 15*time.Second); code != 0 {
			t.Fatalf("exit %d:\n%s", code, p.Logs())
		}
	}
	c := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	var hist struct {
		Scope         string `json:"scope"`
		RetentionDays int    `json:"retention_days"`
		Days          []struct {
			Date  string
			Rules []struct {
				Domain            string
				Admitted, Refused int64
			}
			TopOffenders []struct{ Domain, Value string } `json:"top_offenders"`
		}
	}
	getJSON(t, c, "/api/v1/history?days=1", &hist)
	if hist.Scope != "fleet" || hist.RetentionDays != 35 || len(hist.Days) != 1 {
		t.Fatalf("history %+v", hist)
	}
	today := hist.Days[0]
	if today.Date != time.Now().UTC().Format(time.DateOnly) {
		t.Errorf("date %s", today.Date)
	}
	for _, r := range today.Rules {
		if r.Admitted != 2*195 || r.Refused != 2*60 {
			t.Errorf("today %s: admitted %d refused %d, want %d and %d", r.Domain, r.Admitted, r.Refused, 2*195, 2*60)
		}
	}
	if len(today.Rules) != 2 || len(today.TopOffenders) == 0 {
		t.Errorf("today %+v", today)
	}
}

func has(a offendersAnswer, v string) bool {
	for _, o := range a.Offenders {
		if o.Value == v {
			return true
		}
	}
	return false
}

// rlsRequest is a ShouldRateLimit request of one descriptor of one entry.
func rlsRequest(domain, key, value string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{{
		Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: value}},
	}}}
}
