package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/extauthz/extauthz/ratelimit"
)

// An in-process limiter over a rule file: per-ip allows 3 a minute.
func ExampleOpen() {
	ctx := context.Background()
	lim, err := ratelimit.Open(ctx, "testdata/config.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lim.Close()

	ds := []ratelimit.Descriptor{{{Key: "remote_address", Value: "192.0.2.1"}}}
	for range 4 {
		d, err := lim.Decide(ctx, "web", ds)
		if err != nil {
			fmt.Println(err)
			return
		}
		s := d.Statuses[0]
		fmt.Println(d.Allowed, s.Rule, s.Remaining, s.Limit, s.Period)
	}
	// Output:
	// true per-ip 2 3 1m0s
	// true per-ip 1 3 1m0s
	// true per-ip 0 3 1m0s
	// false per-ip 0 3 1m0s
}

// A remote limiter asks a running extauthz; the Decide calls are the same.
// With FailOpen, requests pass while the service cannot be reached.
func ExampleDial() {
	ctx := context.Background()
	lim, err := ratelimit.Dial(ctx, "extauthz.internal:8081", ratelimit.RemoteOptions{
		Timeout:     50 * time.Millisecond,
		FailureMode: ratelimit.FailOpen,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lim.Close()
	_, _ = lim.Decide(ctx, "web", []ratelimit.Descriptor{{{Key: "remote_address", Value: "192.0.2.1"}}})
}

// A global per-IP limit around a mux, and a stricter one on POST /login.
func ExampleMiddleware() {
	lim, err := ratelimit.Open(context.Background(), "testdata/config.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lim.Close()

	ip := ratelimit.By("remote_address", ratelimit.ClientIP(ratelimit.ClientIPOptions{}))
	mw, err := ratelimit.NewMiddleware(lim, ratelimit.HTTPOptions{
		Domain:      "web",
		Descriptors: [][]ratelimit.Key{{ip}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	login, err := mw.Limit(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "welcome")
	}), ratelimit.Named("login", ip))
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	mux.Handle("POST /login", login)
	h := mw.Handler(mux)

	for range 2 {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("POST", "/login", nil))
		fmt.Println(w.Code, w.Header().Get("X-RateLimit-Limit"), w.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 1 0
	// 429 1 0
}

// A handler reads the decision from its request's context.
func ExampleFromContext() {
	handler := func(w http.ResponseWriter, r *http.Request) {
		d, ok := ratelimit.FromContext(r.Context())
		if !ok {
			fmt.Println("not limited")
			return
		}
		s, _ := d.Limiting()
		fmt.Printf("%s: %d of %d left, reset in %v\n", s.Rule, s.Remaining, s.Limit, s.Reset)
	}
	d := ratelimit.Decision{Allowed: true, Statuses: []ratelimit.Status{
		{Counted: true, Allowed: true, Rule: "per-ip", Limit: 100, Remaining: 42, Reset: 30 * time.Second},
	}}
	r := httptest.NewRequest("GET", "/", nil)
	handler(httptest.NewRecorder(), r.WithContext(ratelimit.NewContext(r.Context(), d)))
	handler(httptest.NewRecorder(), r)
	// Output:
	// per-ip: 42 of 100 left, reset in 30s
	// not limited
}

// Behind a load balancer at 10.0.0.0/8: its X-Forwarded-For is believed,
// a client's own entries are not.
func ExampleClientIP() {
	key := ratelimit.ClientIP(ratelimit.ClientIPOptions{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.2.3:40000"
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 198.51.100.7") // 6.6.6.6 is the client's lie
	fmt.Println(key(r))

	r.RemoteAddr = "203.0.113.9:40000" // not a trusted proxy: its header is ignored
	fmt.Println(key(r))
	// Output:
	// 198.51.100.7 true
	// 203.0.113.9 true
}

// An API key is counted by its hash: the key itself never leaves the
// process.
func ExampleAPIKey() {
	key := ratelimit.APIKey("Authorization")
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer abc")
	v, ok := key(r)
	// The limiter hashes the key on arrival (or names the listed key by
	// its id): it is never counted, labelled or logged in clear.
	fmt.Println(v, ok)
	// Output:
	// abc true
}
