package dashboard_test

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/internal/browsertest"
	"github.com/extauthz/extauthz/internal/insightfake"
	"github.com/extauthz/extauthz/pkg/adminauth"
	"github.com/extauthz/extauthz/pkg/dashboard"
	"github.com/extauthz/extauthz/pkg/server"
)

// adminWithFakeAPI serves the admin handler with the dashboard, the
// contract-shaped fake API and, when token is set, bearer-token access.
func adminWithFakeAPI(t *testing.T, d insightfake.Data, token string) *httptest.Server {
	t.Helper()
	o := server.AdminOptions{
		Gatherer:  prometheus.NewRegistry(),
		Ready:     func(context.Context) error { return nil },
		Config:    func() []byte { return nil },
		Dashboard: dashboard.Handler(),
		API:       insightfake.Handler(d),
	}
	if token != "" {
		path := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		a, err := adminauth.New(adminauth.Settings{Auth: adminauth.Auth{TokenFile: path}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		o.Access = a
	}
	srv := httptest.NewServer(server.NewAdmin(o))
	t.Cleanup(srv.Close)
	return srv
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func waitFor(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

const offenderValues = `[...document.querySelectorAll("#offenders tbody tr td.value")].map(td => td.textContent)`

// TestBrowser loads the dashboard in headless chromium, behind a bearer
// token, against the fake API: the offenders table ranks the heavy hitters
// first, the charts are drawn, a client-chosen value stays text, a row
// opens the client's detail, and the window filter asks the API again.
// Screenshots in light and dark mode are kept (see browsertest.ArtifactDir).
func TestBrowser(t *testing.T) {
	const token = "s3cret-token-for-the-browser-test"
	srv := adminWithFakeAPI(t, insightfake.Sample(time.Now()), token)
	for _, dark := range []bool{false, true} {
		name := map[bool]string{false: "light", true: "dark"}[dark]
		t.Run(name, func(t *testing.T) {
			ctx := browsertest.New(t, browsertest.Options{Dark: dark})
			browsertest.SetHeaders(t, ctx, map[string]string{"Authorization": "Bearer " + token})
			if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
				t.Fatal(err)
			}
			waitFor(t, ctx, "offenders", `document.querySelectorAll("#offenders tbody tr").length >= 5`)
			waitFor(t, ctx, "daily chart", `document.querySelectorAll("#chart-days svg rect.bar").length === 7`)

			values := run(t, ctx, chromedp.Evaluate[[]string](offenderValues))
			heavy := []string{"203.0.113.7", "198.51.100.23", "192.0.2.55"}
			for _, h := range heavy {
				if !slices.Contains(values[:min(5, len(values))], h) {
					t.Errorf("offenders table %q: heavy hitter %s not in the first rows", values, h)
				}
			}
			if len(values) > 0 && values[0] != "203.0.113.7" {
				t.Errorf("first offender %q, want 203.0.113.7", values[0])
			}
			checkCharts(t, ctx)
			checkEscaped(t, ctx, values)
			scope := run(t, ctx, chromedp.Evaluate[string](`document.getElementById("scope").textContent`))
			if scope != "Fleet · 2 replicas" {
				t.Errorf("scope badge %q, want %q", scope, "Fleet · 2 replicas")
			}
			browsertest.Screenshot(t, ctx, "dashboard-"+name)

			checkDetail(t, ctx)
			checkWindowFilter(t, ctx)
			browsertest.Screenshot(t, ctx, "dashboard-detail-"+name)
		})
	}
}

func checkCharts(t *testing.T, ctx context.Context) {
	t.Helper()
	for _, c := range []struct {
		id   string
		bars int
	}{{"chart-days", 7}, {"chart-hours", 48}} {
		drawn := run(t, ctx, chromedp.Evaluate[int](`[...document.querySelectorAll("#`+c.id+` svg rect.bar")].filter(r => r.getBBox().height > 0 && r.getBBox().width > 0).length`))
		if drawn != c.bars {
			t.Errorf("%s: %d bars drawn with a size, want %d", c.id, drawn, c.bars)
		}
	}
	rules := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll("#rules tbody tr").length`))
	if rules != 3 {
		t.Errorf("rules table has %d rows, want 3", rules)
	}
}

// checkEscaped: the value crafted as HTML is shown as its text and never
// ran.
func checkEscaped(t *testing.T, ctx context.Context, values []string) {
	t.Helper()
	if !slices.ContainsFunc(values, func(v string) bool { return strings.HasPrefix(v, `<img src=x onerror="window.__xss=1">`) }) {
		t.Errorf("offenders %q: the HTML-like value is not shown as text", values)
	}
	ran := run(t, ctx, chromedp.Evaluate[bool](`window.__xss === 1 || document.querySelector("#offenders img") !== null`))
	if ran {
		t.Error("a client-chosen value was parsed as HTML")
	}
}

func checkDetail(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(`#offenders tbody tr:first-child`, chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "detail", `document.querySelectorAll("#detail-rules tbody tr").length === 2`)
	got := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#detail-rules tbody tr")].map(tr => tr.cells[1].textContent + "=" + tr.cells[2].textContent)`))
	want := []string{"per-ip=4,210", "per-path=12"}
	if !slices.Equal(got, want) {
		t.Errorf("detail of 203.0.113.7 = %q, want %q", got, want)
	}
	// Readable on a laptop screen: nothing wider than the window, detail open.
	if w := run(t, ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`)); w[0] > w[1] {
		t.Errorf("page is %dpx wide in a %dpx window", w[0], w[1])
	}
	if v := run(t, ctx, chromedp.Evaluate[string](`document.getElementById("detail-value").textContent`)); v != "203.0.113.7" {
		t.Errorf("detail names %q, want 203.0.113.7", v)
	}
}

func checkWindowFilter(t *testing.T, ctx context.Context) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Click(`input[name="window"][value="7d"]`, chromedp.NodeVisible)); err != nil {
		t.Fatal(err)
	}
	// 10.9.9.9 was last seen 26 hours ago: only the 7-day window lists it.
	waitFor(t, ctx, "7-day offenders", offenderValues+`.includes("10.9.9.9")`)

	// The domain filter asks the API for that domain only, and narrows the
	// rule choices to its rules.
	run(t, ctx, chromedp.Evaluate[bool](`(s => { s.value = "api"; return s.dispatchEvent(new Event("change")); })(document.getElementById("f-domain"))`))
	waitFor(t, ctx, "offenders of domain api", offenderValues+`.join() === "sha256:9f86d081884c"`)
	rules := run(t, ctx, chromedp.Evaluate[[]string](`[...document.getElementById("f-rule").options].map(o => o.value)`))
	if !slices.Equal(rules, []string{"", "per-key"}) {
		t.Errorf("rule choices in domain api: %q, want all and per-key", rules)
	}
}

// TestBrowserEmptyStates: without traffic or history the page says so
// instead of drawing empty tables and charts.
func TestBrowserEmptyStates(t *testing.T) {
	srv := adminWithFakeAPI(t, insightfake.Data{Scope: "replica", Replicas: 1, GeneratedAt: time.Now(), NoHistory: true,
		Warning: "redis unreachable: answering for this replica"}, "")
	ctx := browsertest.New(t, browsertest.Options{})
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, ctx, "empty offenders", `!document.getElementById("offenders-empty").hidden`)
	waitFor(t, ctx, "empty history", `!document.getElementById("history-empty").hidden`)
	for id, want := range map[string]string{
		"offenders-empty": "No refusals in the last 5 minutes.",
		"rules-empty":     "No decisions yet",
		"history-empty":   "No history: this server does not serve /api/v1/history.",
		"scope":           "This replica only",
		"warning":         "redis unreachable: answering for this replica",
	} {
		got := run(t, ctx, chromedp.Evaluate[string](`document.getElementById("`+id+`").textContent`))
		if !strings.Contains(got, want) {
			t.Errorf("#%s = %q, want it to contain %q", id, got, want)
		}
	}
	browsertest.Screenshot(t, ctx, "dashboard-empty")
}
