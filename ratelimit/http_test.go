package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/rlsclient/rlstest"
	"github.com/extauthz/extauthz/ratelimit"
)

var clientIP = ratelimit.By("remote_address", ratelimit.ClientIP(ratelimit.ClientIPOptions{}))

// echo writes the decision it finds in the request's context.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	d, ok := ratelimit.FromContext(r.Context())
	if !ok {
		fmt.Fprint(w, "no decision")
		return
	}
	s, _ := d.Limiting()
	fmt.Fprintf(w, "%s %d/%d statuses=%d", s.Rule, s.Remaining, s.Limit, len(d.Statuses))
})

func newMiddleware(t *testing.T, d ratelimit.Decider, o ratelimit.HTTPOptions) *ratelimit.Middleware {
	t.Helper()
	if o.Domain == "" {
		o.Domain = "web"
	}
	if o.Descriptors == nil {
		o.Descriptors = [][]ratelimit.Key{{clientIP}}
	}
	m, err := ratelimit.NewMiddleware(d, o)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func serve(h http.Handler, method, target string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(method, target, nil)) // from 192.0.2.1
	return w
}

func checkHeaders(t *testing.T, w *httptest.ResponseRecorder, limit, remaining string) {
	t.Helper()
	h := w.Header()
	if got := h.Get("X-RateLimit-Limit"); got != limit {
		t.Errorf("X-RateLimit-Limit %q, want %q", got, limit)
	}
	if got := h.Get("X-RateLimit-Remaining"); got != remaining {
		t.Errorf("X-RateLimit-Remaining %q, want %q", got, remaining)
	}
	if n, err := strconv.Atoi(h.Get("X-RateLimit-Reset")); err != nil || n < 1 || n > 3600 {
		t.Errorf("X-RateLimit-Reset %q, want seconds in [1, 3600]", h.Get("X-RateLimit-Reset"))
	}
	retry := h.Get("Retry-After")
	if w.Code == http.StatusTooManyRequests {
		if n, err := strconv.Atoi(retry); err != nil || n < 1 || n > 3600 {
			t.Errorf("Retry-After %q, want seconds in [1, 3600]", retry)
		}
	} else if retry != "" {
		t.Errorf("Retry-After %q on an allowed answer", retry)
	}
}

func TestMiddlewareGlobal(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			h := newMiddleware(t, l, ratelimit.HTTPOptions{}).Handler(echo)
			for i := range 3 {
				w := serve(h, "GET", "/")
				if w.Code != http.StatusOK {
					t.Fatalf("request %d: %d, want 200", i, w.Code)
				}
				checkHeaders(t, w, "3", strconv.Itoa(2-i))
				if want := fmt.Sprintf("per-ip %d/3 statuses=1", 2-i); w.Body.String() != want {
					t.Errorf("request %d: handler saw %q, want %q", i, w.Body, want)
				}
			}
			w := serve(h, "GET", "/")
			if w.Code != http.StatusTooManyRequests {
				t.Fatalf("4th request: %d, want 429", w.Code)
			}
			checkHeaders(t, w, "3", "0")
			if w.Body.String() != "rate limit exceeded\n" || w.Header().Get("Content-Type") != "text/plain; charset=utf-8" {
				t.Errorf("429 body %q (%s)", w.Body, w.Header().Get("Content-Type"))
			}
		})
	}
}

func TestMiddlewarePerHandler(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			m := newMiddleware(t, l, ratelimit.HTTPOptions{})
			login, err := m.Limit(echo, ratelimit.Named("login", clientIP))
			if err != nil {
				t.Fatal(err)
			}
			mux := http.NewServeMux()
			mux.Handle("POST /login", login)
			mux.Handle("GET /hello", echo)
			h := m.Handler(mux)

			w := serve(h, "POST", "/login")
			if w.Code != http.StatusOK || w.Body.String() != "login 0/1 statuses=2" {
				t.Fatalf("first login: %d %q, want 200 and both decisions merged, login limiting", w.Code, w.Body)
			}
			checkHeaders(t, w, "1", "0")
			w = serve(h, "POST", "/login")
			if w.Code != http.StatusTooManyRequests {
				t.Fatalf("second login: %d, want 429", w.Code)
			}
			checkHeaders(t, w, "1", "0")
			// The global limit still has room (2 of 3 used).
			w = serve(h, "GET", "/hello")
			if w.Code != http.StatusOK || w.Body.String() != "per-ip 0/3 statuses=1" {
				t.Errorf("hello: %d %q, want 200 under per-ip only", w.Code, w.Body)
			}
			checkHeaders(t, w, "3", "0")
		})
	}
}

func TestMiddlewareNoDescriptor(t *testing.T) {
	l, err := ratelimit.Open(context.Background(), testConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := newMiddleware(t, l, ratelimit.HTTPOptions{Descriptors: [][]ratelimit.Key{
		{ratelimit.By("api_key", ratelimit.APIKey("X-API-Key")), clientIP},
	}}).Handler(echo)
	for range 5 {
		w := serve(h, "GET", "/")
		if w.Code != http.StatusOK || w.Body.String() != "no decision" || w.Header().Get("X-RateLimit-Limit") != "" {
			t.Fatalf("no API key: %d %q %v, want passed through undecided", w.Code, w.Body, w.Header())
		}
	}
}

func TestMiddlewareOptions(t *testing.T) {
	ctx := context.Background()
	l, err := ratelimit.Open(ctx, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	m := newMiddleware(t, l, ratelimit.HTTPOptions{
		Descriptors:        [][]ratelimit.Key{{ratelimit.By("generic_key", ratelimit.Const("login")), clientIP}},
		HideAllowedHeaders: true,
		RefusedBody:        []byte(`{"error":"slow down"}`),
		RefusedContentType: "application/json",
	})
	h := m.Handler(echo)
	w := serve(h, "GET", "/")
	if w.Code != http.StatusOK || len(w.Header()) != 1 { // Content-Type only
		t.Errorf("allowed: %d, headers %v; want 200 without rate-limit headers", w.Code, w.Header())
	}
	w = serve(h, "GET", "/")
	if w.Code != http.StatusTooManyRequests || w.Body.String() != `{"error":"slow down"}` || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("refused: %d %q %q", w.Code, w.Body, w.Header().Get("Content-Type"))
	}
	checkHeaders(t, w, "1", "0")

	// A Refused handler answers instead, with the decision in its context.
	m = newMiddleware(t, l, ratelimit.HTTPOptions{
		Descriptors: [][]ratelimit.Key{{ratelimit.By("generic_key", ratelimit.Const("login")), clientIP}},
		Refused: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			d, _ := ratelimit.FromContext(r.Context())
			s, _ := d.Limiting()
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "refused by %s", s.Rule)
		}),
	})
	w = serve(m.Handler(echo), "GET", "/")
	if w.Code != http.StatusServiceUnavailable || w.Body.String() != "refused by login" {
		t.Errorf("Refused handler: %d %q", w.Code, w.Body)
	}
	if w.Header().Get("X-RateLimit-Limit") != "1" || w.Header().Get("Retry-After") == "" {
		t.Errorf("Refused handler: headers %v, want them set before it runs", w.Header())
	}
}

func TestMiddlewareOnError(t *testing.T) {
	ctx := context.Background()
	l, err := ratelimit.Dial(ctx, rlstest.DownAddr(t), ratelimit.RemoteOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w := serve(newMiddleware(t, l, ratelimit.HTTPOptions{}).Handler(echo), "GET", "/")
	if w.Code != http.StatusServiceUnavailable || !strings.Contains(w.Body.String(), "rate limit unavailable") {
		t.Errorf("service down, FailError: %d %q, want 503", w.Code, w.Body)
	}
	var got error
	m := newMiddleware(t, l, ratelimit.HTTPOptions{OnError: func(w http.ResponseWriter, r *http.Request, err error) {
		got = err
		echo.ServeHTTP(w, r) // fail open by hand
	}})
	w = serve(m.Handler(echo), "GET", "/")
	if w.Code != http.StatusOK || w.Body.String() != "no decision" || got == nil {
		t.Errorf("custom OnError: %d %q err %v", w.Code, w.Body, got)
	}

	// FailOpen answers with a failed decision: allowed, no headers.
	open, err := ratelimit.Dial(ctx, rlstest.DownAddr(t), ratelimit.RemoteOptions{Timeout: 2 * time.Second, FailureMode: ratelimit.FailOpen})
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	w = serve(newMiddleware(t, open, ratelimit.HTTPOptions{}).Handler(echo), "GET", "/")
	if w.Code != http.StatusOK || w.Header().Get("X-RateLimit-Limit") != "" {
		t.Errorf("FailOpen: %d %v", w.Code, w.Header())
	}
	// FailClosed: 429 with Retry-After only.
	closed, err := ratelimit.Dial(ctx, rlstest.DownAddr(t), ratelimit.RemoteOptions{Timeout: 2 * time.Second, FailureMode: ratelimit.FailClosed, FailClosedRetryAfter: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer closed.Close()
	w = serve(newMiddleware(t, closed, ratelimit.HTTPOptions{}).Handler(echo), "GET", "/")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "5" || w.Header().Get("X-RateLimit-Limit") != "" {
		t.Errorf("FailClosed: %d %v", w.Code, w.Header())
	}
}

func TestMiddlewareOverRealHTTP(t *testing.T) {
	l, err := ratelimit.Open(context.Background(), testConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	srv := httptest.NewServer(newMiddleware(t, l, ratelimit.HTTPOptions{}).Handler(echo))
	defer srv.Close()
	var codes []int
	for range 4 {
		resp, err := http.Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.Header.Get("X-RateLimit-Limit") != "3" {
			t.Errorf("X-RateLimit-Limit %q over HTTP", resp.Header.Get("X-RateLimit-Limit"))
		}
	}
	if fmt.Sprint(codes) != "[200 200 200 429]" {
		t.Errorf("codes %v, want three 200 then 429 (per 127.0.0.1)", codes)
	}
}

func TestMiddlewareValidate(t *testing.T) {
	d := fixed{}
	for _, tc := range []struct {
		o    ratelimit.HTTPOptions
		path string
	}{
		{ratelimit.HTTPOptions{Descriptors: [][]ratelimit.Key{{clientIP}}}, "Domain"},
		{ratelimit.HTTPOptions{Domain: "web", Descriptors: [][]ratelimit.Key{{clientIP}, {}}}, "Descriptors[1]"},
		{ratelimit.HTTPOptions{Domain: "web", Descriptors: [][]ratelimit.Key{{clientIP, {Value: ratelimit.Method()}}}}, "Descriptors[0][1].Name"},
		{ratelimit.HTTPOptions{Domain: "web", Descriptors: [][]ratelimit.Key{{{Name: "m"}}}}, "Descriptors[0][0].Value"},
	} {
		_, err := ratelimit.NewMiddleware(d, tc.o)
		var fe *field.Error
		if !errors.As(err, &fe) || fe.Path != tc.path {
			t.Errorf("NewMiddleware(%+v): %v, want a field error at %s", tc.o, err, tc.path)
		}
	}
	if _, err := ratelimit.NewMiddleware(nil, ratelimit.HTTPOptions{Domain: "web"}); err == nil {
		t.Error("nil decider: no error")
	}
	m := newMiddleware(t, d, ratelimit.HTTPOptions{})
	if _, err := m.Limit(echo, []ratelimit.Key{{Name: "x"}}); err == nil {
		t.Error("Limit with a key without value: no error")
	}
}

func TestMiddlewareConcurrent(t *testing.T) {
	l, err := ratelimit.Open(context.Background(), testConfig)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	h := newMiddleware(t, l, ratelimit.HTTPOptions{}).Handler(echo)
	codes := make(chan int, 40)
	for range 40 {
		go func() { codes <- serve(h, "GET", "/").Code }()
	}
	ok := 0
	for range 40 {
		if <-codes == http.StatusOK {
			ok++
		}
	}
	if ok != 3 {
		t.Errorf("%d of 40 concurrent requests allowed, want exactly 3", ok)
	}
}
