package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/internal/browsertest"
	"github.com/extauthz/extauthz/internal/redistest"
)

const dashboardToken = "e2e-dashboard-token-0123456789"

// heavyHitters send far more than the limit of 5 per hour; in this order,
// each is refused 15 times more than the next.
var heavyHitters = []struct {
	ip string
	n  int
}{{"203.0.113.7", 60}, {"198.51.100.23", 45}, {"192.0.2.55", 30}}

// dashboardConfig writes a config with the admin token, backends (a
// backends section, "" for memory) and the limit of 5 an hour per client
// IP; it returns the config's and the token's paths.
func dashboardConfig(t *testing.T, backends string) (cfg, token string) {
	t.Helper()
	dir := t.TempDir()
	token = WriteFile(t, dir, "admin-token", dashboardToken+"\n")
	cfg = WriteFile(t, dir, "extauthz.yaml", backends+`admin:
  auth:
    token_file: `+token+`
insight:
  flush_interval: 1s
domains:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: {name: per-ip, unit: hour, requests_per_unit: 5}
`)
	return cfg, token
}

// startUnderTraffic starts extauthz (memory backend) with an admin token
// and sends it traffic (sendTraffic).
func startUnderTraffic(t *testing.T) (*Process, string) {
	t.Helper()
	cfg, token := dashboardConfig(t, "")
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	sendTraffic(t, p)
	return p, token
}

// sendTraffic sends p traffic from 40 light clients and the three heavy
// hitters; light traffic goes on until the test ends.
func sendTraffic(t *testing.T, p *Process) {
	t.Helper()
	client := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	call := func(ip string) {
		req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", ip)}}
		if _, err := client.ShouldRateLimit(context.Background(), req); err != nil {
			t.Errorf("ShouldRateLimit(%s): %v", ip, err)
		}
	}
	for _, h := range heavyHitters {
		for range h.n {
			call(h.ip)
		}
	}
	for i := range 40 {
		for range 3 {
			call(fmt.Sprintf("10.0.%d.%d", i/10, i%10+1))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ctx.Err() == nil; i++ {
			call(fmt.Sprintf("10.1.%d.%d", i/200%200, i%200+1))
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// openDashboard loads the dashboard of p in chromium with the admin token
// and returns the browser context and a poll function.
func openDashboard(t *testing.T, p *Process, dark bool) (context.Context, func(what, expr string)) {
	t.Helper()
	ctx := browsertest.New(t, browsertest.Options{Dark: dark})
	browsertest.SetHeaders(t, ctx, map[string]string{"Authorization": "Bearer " + dashboardToken})
	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+p.HTTPAddr+"/")); err != nil {
		t.Fatal(err)
	}
	return ctx, func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
			t.Fatalf("waiting for %s (%s): %v", what, expr, err)
		}
	}
}

const offenderValuesJS = `[...document.querySelectorAll("#offenders tbody tr td.value")].map(td => td.textContent)`

// wantHeavyFirst checks that the offenders table starts with the heavy
// hitters, in order.
func wantHeavyFirst(t *testing.T, ctx context.Context) {
	t.Helper()
	values, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](offenderValuesJS))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{heavyHitters[0].ip, heavyHitters[1].ip, heavyHitters[2].ip}
	if len(values) < 3 || !slices.Equal(values[:3], want) {
		t.Errorf("offenders table starts %q, want the heavy hitters %q", values, want)
	}
}

// TestDashboardBrowser: chromium loads the dashboard of the real binary
// under traffic, behind the admin token, and shows the three heavy hitters
// first and the blocking charts drawn. Screenshots (light and dark) are
// kept: see browsertest.ArtifactDir.
func TestDashboardBrowser(t *testing.T) {
	p, _ := startUnderTraffic(t)
	if code, _ := p.Get(t, "/"); code != http.StatusUnauthorized {
		t.Errorf("GET / without the token: status %d, want 401", code)
	}
	for _, dark := range []bool{false, true} {
		name := map[bool]string{false: "light", true: "dark"}[dark]
		t.Run(name, func(t *testing.T) {
			ctx, poll := openDashboard(t, p, dark)
			poll("offenders", `document.querySelectorAll("#offenders tbody tr").length >= 3`)
			poll("charts", `document.querySelectorAll("#chart-days svg rect.bar").length >= 1 && document.querySelectorAll("#chart-hours svg rect.bar").length >= 1`)
			wantHeavyFirst(t, ctx)
			for _, id := range []string{"chart-days", "chart-hours"} {
				drawn, err := chromedp.Run(ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("#`+id+` svg rect.bar")].filter(r => r.getBBox().height > 0).length`))
				if err != nil {
					t.Fatal(err)
				}
				if drawn == 0 {
					t.Errorf("%s: no bar drawn with a height: today's refusals are missing", id)
				}
			}
			rules, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("#rules tbody").textContent`))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rules, "edge") {
				t.Errorf("rules table %q does not list domain edge", rules)
			}
			// A row opens the client's detail from /api/v1/offenders/detail.
			if err := chromedp.Do(ctx, chromedp.Click(`#offenders tbody tr:first-child`, chromedp.NodeVisible)); err != nil {
				t.Fatal(err)
			}
			poll("detail", `document.querySelectorAll("#detail-rules tbody tr").length >= 1`)
			detail, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#detail-rules tbody tr")].map(tr => tr.cells[0].textContent + " " + tr.cells[2].textContent)`))
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("edge %d", heavyHitters[0].n-5); !slices.Contains(detail, want) {
				t.Errorf("detail of %s: %q, want a row %q", heavyHitters[0].ip, detail, want)
			}
			browsertest.Screenshot(t, ctx, "dashboard-e2e-"+name)
		})
	}
}

// TestDashboardFleet: two replicas share Redis; the heavy hitters call
// replica a only, and the dashboard of replica b shows them, for the fleet.
func TestDashboardFleet(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg, _ := dashboardConfig(t, "backends:\n  - type: redis\n    url: redis://"+srv.Addr+"/0\nbreaker: {call_timeout: 2s}\n")
	a := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	b := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	sendTraffic(t, a)
	ctx, poll := openDashboard(t, b, false)
	poll("fleet scope", `document.getElementById("scope").textContent === "Fleet · 2 replicas"`)
	poll("offenders from replica a", offenderValuesJS+`.includes("192.0.2.55")`)
	wantHeavyFirst(t, ctx)
	browsertest.Screenshot(t, ctx, "dashboard-e2e-fleet")
}

// TestTopRealBinary: extauthz top --once against the real binary lists the heavy
// hitters first.
func TestTopRealBinary(t *testing.T) {
	p, token := startUnderTraffic(t)
	r := Run(t, extauthzBin, nil, "top", "--addr", p.HTTPAddr, "--token-file", token, "--once")
	if r.Code != 0 {
		t.Fatalf("top exit %d: %s", r.Code, r.Stderr)
	}
	_, offenders, ok := strings.Cut(r.Stdout, "TOP OFFENDERS")
	if !ok {
		t.Fatalf("no offenders in:\n%s", r.Stdout)
	}
	lines := strings.Split(strings.TrimSpace(offenders), "\n")
	if len(lines) < 5 {
		t.Fatalf("offenders section too short:\n%s", offenders)
	}
	for i, h := range heavyHitters {
		if !strings.HasPrefix(lines[2+i], h.ip+" ") {
			t.Errorf("offender %d: %q, want %s first", i+1, lines[2+i], h.ip)
		}
	}
	if r := Run(t, extauthzBin, nil, "top", "--addr", p.HTTPAddr, "--once"); r.Code != 1 || !strings.Contains(r.Stderr, "401") {
		t.Errorf("top without the token: exit %d, stderr %q; want 1 and a 401", r.Code, r.Stderr)
	}
}
