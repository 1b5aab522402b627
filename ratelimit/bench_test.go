package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/extauthz/extauthz/ratelimit"
)

// fixed is a Decider answering one decision without counting: the
// benchmark measures the middleware, not a limiter.
type fixed struct{ d ratelimit.Decision }

func (f fixed) Decide(context.Context, string, []ratelimit.Descriptor) (ratelimit.Decision, error) {
	return f.d, nil
}

var allowed = ratelimit.Decision{Allowed: true, Statuses: []ratelimit.Status{
	{Counted: true, Allowed: true, Limit: 1000, Period: time.Minute, Remaining: 999, Reset: 42 * time.Second, Rule: "per-ip"},
}}

// nopWriter is a ResponseWriter that keeps its header map between requests,
// as a server's does per connection.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *nopWriter) WriteHeader(int)             {}

func benchSetup(tb testing.TB) (http.Handler, *http.Request, *nopWriter) {
	m, err := ratelimit.NewMiddleware(fixed{allowed}, ratelimit.HTTPOptions{
		Domain:      "web",
		Descriptors: [][]ratelimit.Key{{clientIP}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	h := m.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	return h, httptest.NewRequest("GET", "/", nil), &nopWriter{h: http.Header{}}
}

// BenchmarkMiddleware is the middleware's overhead per allowed request with
// headers: descriptors from the client IP, the decision in the context, the
// three X-RateLimit-* headers.
func BenchmarkMiddleware(b *testing.B) {
	h, r, w := benchSetup(b)
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// TestMiddlewareAllocs holds the middleware to its budget: at most 3
// allocations per request beyond the decision (the context value, the
// request copy of WithContext, the header text).
func TestMiddlewareAllocs(t *testing.T) {
	h, r, w := benchSetup(t)
	if n := testing.AllocsPerRun(1000, func() { h.ServeHTTP(w, r) }); n > 3 {
		t.Errorf("%v allocations per request, want at most 3", n)
	}
	if w.h.Get("X-RateLimit-Remaining") != "999" {
		t.Errorf("headers %v", w.h)
	}
}

// BenchmarkMiddlewareLocal is a whole allowed request through the
// middleware and the in-process limiter on the memory backend: the
// decision included.
func BenchmarkMiddlewareLocal(b *testing.B) {
	path := filepath.Join(b.TempDir(), "bench.yaml")
	rules := "domains: [{domain: bench, descriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 1000000000}}]}]\n"
	if err := os.WriteFile(path, []byte(rules), 0o600); err != nil {
		b.Fatal(err)
	}
	l, err := ratelimit.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	m, err := ratelimit.NewMiddleware(l, ratelimit.HTTPOptions{
		Domain:      "bench",
		Descriptors: [][]ratelimit.Key{{ratelimit.By("k", ratelimit.Const("v"))}},
	})
	if err != nil {
		b.Fatal(err)
	}
	h := m.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	r, w := httptest.NewRequest("GET", "/", nil), &nopWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
	if w.h.Get("Retry-After") != "" {
		b.Fatal("refused: the benchmark measures allowed requests")
	}
}

// BenchmarkDecideLocal is one in-process decision of one descriptor
// (server.Decide: no protocol messages).
func BenchmarkDecideLocal(b *testing.B) {
	l, err := ratelimit.Open(context.Background(), "testdata/config.yaml")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	ds := []ratelimit.Descriptor{{{Key: "remote_address", Value: "192.0.2.1"}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := l.Decide(context.Background(), "web", ds); err != nil {
			b.Fatal(err)
		}
	}
}
