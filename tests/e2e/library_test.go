package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/extauthz/extauthz/ratelimit"
)

// startLibraryServer runs the binary over the ratelimit package's test
// rules (domain web: per-ip 3 a minute), with response headers on.
func startLibraryServer(t *testing.T) *Process {
	t.Helper()
	rules, err := os.ReadFile(filepath.Join("..", "..", "ratelimit", "testdata", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := WriteFile(t, t.TempDir(), "extauthz.yaml", "response_headers: {enabled: true}\n"+string(rules))
	return Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
}

// libraryService is a net/http service limited per client IP by a remote
// limiter; its handler writes the decision it finds in the context.
func libraryService(t *testing.T, addr string, o ratelimit.RemoteOptions) *httptest.Server {
	t.Helper()
	l, err := ratelimit.Dial(context.Background(), addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	m, err := ratelimit.NewMiddleware(l, ratelimit.HTTPOptions{
		Domain:      "web",
		Descriptors: [][]ratelimit.Key{{ratelimit.By("remote_address", ratelimit.ClientIP(ratelimit.ClientIPOptions{}))}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(m.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, ok := ratelimit.FromContext(r.Context())
		s, _ := d.Limiting()
		fmt.Fprintf(w, "%v %s %d/%d failed=%v", ok, s.Rule, s.Remaining, s.Limit, d.Failed)
	})))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// TestLibraryRemote: the ratelimit middleware against the real binary over
// real HTTP: three requests a minute per client, then 429 with headers
// and Retry-After; once the binary is down, each failure mode answers.
func TestLibraryRemote(t *testing.T) {
	p := startLibraryServer(t)
	opts := ratelimit.RemoteOptions{Timeout: 2 * time.Second}
	srv := libraryService(t, p.GRPCAddr, opts)
	for i := range 3 {
		resp, body := get(t, srv.URL)
		want := fmt.Sprintf("true per-ip %d/3 failed=false", 2-i)
		if resp.StatusCode != http.StatusOK || body != want {
			t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, body, want)
		}
		if got := resp.Header.Get("X-RateLimit-Remaining"); got != strconv.Itoa(2-i) {
			t.Errorf("request %d: X-RateLimit-Remaining %q, want %d", i, got, 2-i)
		}
	}
	resp, _ := get(t, srv.URL)
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || err != nil || retry < 1 || retry > 60 ||
		resp.Header.Get("X-RateLimit-Limit") != "3" || resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("4th request: %d %v, want 429 with Retry-After in [1, 60] and limit 3, 0 remaining", resp.StatusCode, resp.Header)
	}

	p.Kill()
	down := map[ratelimit.FailureMode]struct {
		code int
		body string
	}{
		ratelimit.FailError:  {http.StatusServiceUnavailable, "rate limit unavailable\n"},
		ratelimit.FailOpen:   {http.StatusOK, "true  0/0 failed=true"},
		ratelimit.FailClosed: {http.StatusTooManyRequests, "rate limit exceeded\n"},
	}
	for mode, want := range down {
		t.Run("down/"+mode.String(), func(t *testing.T) {
			o := opts
			o.FailureMode, o.FailClosedRetryAfter = mode, 7*time.Second
			resp, body := get(t, libraryService(t, p.GRPCAddr, o).URL)
			if resp.StatusCode != want.code || body != want.body {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, body, want.code, want.body)
			}
			if mode == ratelimit.FailClosed && resp.Header.Get("Retry-After") != "7" {
				t.Errorf("Retry-After %q, want 7", resp.Header.Get("Retry-After"))
			}
		})
	}
}
