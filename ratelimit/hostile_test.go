package ratelimit_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/extauthz/extauthz/ratelimit"
)

// hostileRules: 3 requests a minute per client IP; 2 per API key, 5 for the
// key "gold" (which the limiter hashes at load, like every literal API key
// in a rule file).
var hostileRules = `domains:
  - domain: hostile
    descriptors:
      - key: remote_address
        rate_limit: {name: per-ip, unit: minute, requests_per_unit: 3}
      - key: api_key
        rate_limit: {name: per-key, unit: minute, requests_per_unit: 2}
      - key: api_key
        value: gold
        rate_limit: {name: gold, unit: minute, requests_per_unit: 5}
`

// hostile returns a handler limited by descriptors over a fresh in-process
// limiter of hostileRules, and a counter of the requests it admitted.
func hostile(t *testing.T, descriptors ...[]ratelimit.Key) (http.Handler, *int) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hostile.yaml")
	if err := os.WriteFile(path, []byte(hostileRules), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := ratelimit.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	m, err := ratelimit.NewMiddleware(l, ratelimit.HTTPOptions{Domain: "hostile", Descriptors: descriptors})
	if err != nil {
		t.Fatal(err)
	}
	admitted := new(int)
	return m.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { *admitted++ })), admitted
}

// send sends n requests built by req(i) and fails the test when a request
// is answered by anything but 200 or 429.
func send(t *testing.T, h http.Handler, n int, req func(i int) *http.Request) {
	t.Helper()
	for i := range n {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req(i))
		if w.Code != http.StatusOK && w.Code != http.StatusTooManyRequests {
			t.Fatalf("request %d: %d %q", i, w.Code, w.Body)
		}
	}
}

func from(peer string, xff ...string) *http.Request {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = peer
	for _, v := range xff {
		r.Header.Add("X-Forwarded-For", v)
	}
	return r
}

// TestHostileClientIP: a client that forges X-Forwarded-For, a new
// address per request, never gets past its own limit of 3.
func TestHostileClientIP(t *testing.T) {
	proxies := ratelimit.ClientIPOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct {
		name string
		o    ratelimit.ClientIPOptions
		req  func(i int) *http.Request
	}{
		{"no proxies, spoofed header", ratelimit.ClientIPOptions{},
			func(i int) *http.Request { return from("192.0.2.9:1234", fmt.Sprintf("203.0.113.%d", i)) }},
		{"trusted proxies, direct client spoofing", proxies,
			func(i int) *http.Request { return from("192.0.2.9:1234", fmt.Sprintf("10.0.0.%d, 203.0.113.%d", i, i)) }},
		{"trusted proxies, spoofed left of the proxy's entry", proxies,
			func(i int) *http.Request {
				return from("10.0.0.1:80", fmt.Sprintf("203.0.113.%d, 192.0.2.9", i))
			}},
		{"trusted proxies, spoof in a separate header line", proxies,
			func(i int) *http.Request {
				return from("10.0.0.1:80", fmt.Sprintf("203.0.113.%d", i), "192.0.2.9")
			}},
		{"trusted proxies, spoofed private address", proxies,
			func(i int) *http.Request { return from("10.0.0.1:80", fmt.Sprintf("10.9.9.%d, 192.0.2.9", i)) }},
		{"one trusted hop", ratelimit.ClientIPOptions{TrustedHops: 1},
			func(i int) *http.Request {
				return from("10.0.0.1:80", fmt.Sprintf("203.0.113.%d, 198.51.100.%d, 192.0.2.9", i, i))
			}},
		{"garbage header", ratelimit.ClientIPOptions{TrustedHops: 1},
			func(i int) *http.Request { return from("10.0.0.1:80", fmt.Sprintf("unknown-%d", i)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, admitted := hostile(t, []ratelimit.Key{ratelimit.By("remote_address", ratelimit.ClientIP(tc.o))})
			send(t, h, 20, tc.req)
			if *admitted != 3 {
				t.Errorf("admitted %d of 20, want exactly the limit, 3", *admitted)
			}
		})
	}
}

// TestHostileAPIKey: spelling the same key differently, or sending a
// listed key's hash as one's key, earns no extra quota.
func TestHostileAPIKey(t *testing.T) {
	key := []ratelimit.Key{ratelimit.By("api_key", ratelimit.APIKey("Authorization"))}
	for _, tc := range []struct {
		name  string
		auth  func(i int) string
		limit int
	}{
		{"scheme case varies", func(i int) string { return []string{"Bearer k1", "bearer k1", "BEARER k1"}[i%3] }, 2},
		{"the hash of a listed key as the key", func(int) string { return "Bearer " + sha256Hex("gold") }, 2},
		{"the listed key itself", func(int) string { return "Bearer gold" }, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, admitted := hostile(t, key)
			send(t, h, 20, func(i int) *http.Request {
				r := from("192.0.2.9:1234")
				r.Header.Set("Authorization", tc.auth(i))
				return r
			})
			if *admitted != tc.limit {
				t.Errorf("admitted %d of 20, want exactly %d", *admitted, tc.limit)
			}
		})
	}
}

// TestHostileAlternatingIdentities: a client rotating API keys (and
// forging X-Forwarded-For) from one address is still held to the per-IP
// limit, whatever each key has left.
func TestHostileAlternatingIdentities(t *testing.T) {
	h, admitted := hostile(t,
		[]ratelimit.Key{ratelimit.By("remote_address", ratelimit.ClientIP(ratelimit.ClientIPOptions{}))},
		[]ratelimit.Key{ratelimit.By("api_key", ratelimit.APIKey("X-Api-Key"))},
	)
	send(t, h, 30, func(i int) *http.Request {
		r := from("192.0.2.9:1234", fmt.Sprintf("198.51.100.%d", i))
		r.Header.Set("X-Api-Key", fmt.Sprintf("key-%d", i%4))
		return r
	})
	if *admitted != 3 {
		t.Errorf("admitted %d of 30, want exactly the per-IP limit, 3", *admitted)
	}
}

// sha256Hex is the hex SHA-256 of s: what a client might send hoping to be
// taken for the key it hashes.
func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}
