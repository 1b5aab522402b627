package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/extauthz/extauthz/ratelimit"
)

// keyCase is one request and the value a KeyFunc must read from it.
type keyCase struct {
	name   string
	req    func(r *http.Request)
	want   string
	wantOK bool
}

func runKeyCases(t *testing.T, f ratelimit.KeyFunc, cases []keyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "http://example.com/", nil)
			if tc.req != nil {
				tc.req(r)
			}
			got, ok := f(r)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("got (%q, %v), want (%q, %v)", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func remote(addr string, xff ...string) func(*http.Request) {
	return func(r *http.Request) {
		r.RemoteAddr = addr
		for _, v := range xff {
			r.Header.Add("X-Forwarded-For", v)
		}
	}
}

func TestClientIPNoProxy(t *testing.T) {
	runKeyCases(t, ratelimit.ClientIP(ratelimit.ClientIPOptions{}), []keyCase{
		{"peer", remote("203.0.113.7:5555"), "203.0.113.7", true},
		{"spoofed XFF ignored", remote("203.0.113.7:5555", "1.2.3.4"), "203.0.113.7", true},
		{"spoofed X-Real-IP ignored", func(r *http.Request) { r.RemoteAddr = "203.0.113.7:1"; r.Header.Set("X-Real-IP", "1.2.3.4") }, "203.0.113.7", true},
		{"IPv6 peer", remote("[2001:DB8::1]:443"), "2001:db8::1", true},
		{"IPv4-mapped peer", remote("[::ffff:192.0.2.9]:443"), "192.0.2.9", true},
		{"no port", remote("192.0.2.9"), "192.0.2.9", true},
		{"unix socket", remote("@"), "", false},
		{"empty", remote(""), "", false},
	})
}

func TestClientIPTrustedProxies(t *testing.T) {
	f := ratelimit.ClientIP(ratelimit.ClientIPOptions{TrustedProxies: []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48"),
	}})
	runKeyCases(t, f, []keyCase{
		{"untrusted peer: XFF ignored", remote("203.0.113.7:1", "198.51.100.1"), "203.0.113.7", true},
		{"trusted peer, one hop", remote("10.0.0.1:1", "198.51.100.1"), "198.51.100.1", true},
		{"spoofed left-most entry", remote("10.0.0.1:1", "1.1.1.1, 198.51.100.1"), "198.51.100.1", true},
		{"spoofed entries and proxy chain", remote("10.0.0.1:1", "1.1.1.1, 2.2.2.2, 198.51.100.1, 10.0.0.5, 10.0.0.9"), "198.51.100.1", true},
		{"several header lines", remote("10.0.0.1:1", "1.1.1.1", "198.51.100.1, 10.0.0.5"), "198.51.100.1", true},
		{"spoofed trusted-looking entry left of client", remote("10.0.0.1:1", "10.9.9.9, 198.51.100.1"), "198.51.100.1", true},
		{"all trusted: left-most", remote("10.0.0.1:1", "10.0.0.3, 10.0.0.2"), "10.0.0.3", true},
		{"no header: peer", remote("10.0.0.1:1"), "10.0.0.1", true},
		{"garbage right of client: last trusted", remote("10.0.0.1:1", "198.51.100.1, nonsense, 10.0.0.2"), "10.0.0.2", true},
		{"garbage only: peer", remote("10.0.0.1:1", "nonsense"), "10.0.0.1", true},
		{"entry with port", remote("10.0.0.1:1", "198.51.100.1:4711"), "198.51.100.1", true},
		{"IPv6 entry with port", remote("10.0.0.1:1", "[2001:DB8::7]:4711"), "2001:db8::7", true},
		{"IPv6 trusted proxy", remote("[2001:db8:ffff::1]:1", "2001:db8:1::1"), "2001:db8:1::1", true},
		{"mapped entry", remote("10.0.0.1:1", "::ffff:198.51.100.1"), "198.51.100.1", true},
		{"empty items skipped", remote("10.0.0.1:1", "198.51.100.1, , "), "198.51.100.1", true},
	})
}

func TestClientIPTrustedHops(t *testing.T) {
	runKeyCases(t, ratelimit.ClientIP(ratelimit.ClientIPOptions{TrustedHops: 2}), []keyCase{
		{"two hops", remote("10.0.0.1:1", "198.51.100.1, 10.0.0.5"), "198.51.100.1", true},
		{"spoofed left entries", remote("10.0.0.1:1", "1.1.1.1, 2.2.2.2, 198.51.100.1, 10.0.0.5"), "198.51.100.1", true},
		{"header too short: peer", remote("10.0.0.1:1", "10.0.0.5"), "10.0.0.1", true},
		{"no header: peer", remote("10.0.0.1:1"), "10.0.0.1", true},
		{"invalid at the hop: peer", remote("10.0.0.1:1", "bogus, 10.0.0.5"), "10.0.0.1", true},
		{"custom header ignored", func(r *http.Request) { r.RemoteAddr = "10.0.0.1:1"; r.Header.Set("X-Real-IP", "1.1.1.1") }, "10.0.0.1", true},
	})
	// Hops gated by trusted proxies: a direct client's header is ignored.
	f := ratelimit.ClientIP(ratelimit.ClientIPOptions{TrustedHops: 1, TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, Header: "X-Real-IP"})
	runKeyCases(t, f, []keyCase{
		{"direct client spoofing", func(r *http.Request) { r.RemoteAddr = "203.0.113.7:1"; r.Header.Set("X-Real-IP", "1.1.1.1") }, "203.0.113.7", true},
		{"via proxy", func(r *http.Request) { r.RemoteAddr = "10.0.0.1:1"; r.Header.Set("X-Real-IP", "198.51.100.1") }, "198.51.100.1", true},
		{"XFF not read", remote("10.0.0.1:1", "198.51.100.1"), "10.0.0.1", true},
	})
}

func TestHeaderQueryMethodPath(t *testing.T) {
	runKeyCases(t, ratelimit.Header("x-tenant-plan"), []keyCase{
		{"set", func(r *http.Request) { r.Header.Set("X-Tenant-Plan", "gold") }, "gold", true},
		{"first of two", func(r *http.Request) { r.Header.Add("X-Tenant-Plan", "a"); r.Header.Add("X-Tenant-Plan", "b") }, "a", true},
		{"empty", func(r *http.Request) { r.Header.Set("X-Tenant-Plan", "") }, "", false},
		{"missing", nil, "", false},
	})
	runKeyCases(t, ratelimit.Query("user"), []keyCase{
		{"set", func(r *http.Request) { r.URL.RawQuery = "user=ann&x=1" }, "ann", true},
		{"escaped", func(r *http.Request) { r.URL.RawQuery = "user=a%20b" }, "a b", true},
		{"empty", func(r *http.Request) { r.URL.RawQuery = "user=" }, "", false},
		{"missing", nil, "", false},
	})
	runKeyCases(t, ratelimit.Method(), []keyCase{{"GET", nil, "GET", true}})
	runKeyCases(t, ratelimit.Path(), []keyCase{{"path", func(r *http.Request) { r.URL.Path = "/a/1" }, "/a/1", true}})
	runKeyCases(t, ratelimit.Const("x"), []keyCase{{"const", nil, "x", true}})
}

func TestAPIKey(t *testing.T) {
	const secret = "s3cr3t-key"
	runKeyCases(t, ratelimit.APIKey("X-API-Key"), []keyCase{
		{"set", func(r *http.Request) { r.Header.Set("X-Api-Key", secret) }, secret, true},
		{"missing", nil, "", false},
	})
	runKeyCases(t, ratelimit.APIKey("authorization"), []keyCase{
		{"bearer", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+secret) }, secret, true},
		{"lower-case bearer", func(r *http.Request) { r.Header.Set("Authorization", "bearer "+secret) }, secret, true},
		{"basic", func(r *http.Request) { r.Header.Set("Authorization", "Basic Zm9vOmJhcg==") }, "", false},
		{"bearer without token", func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }, "", false},
	})
}

func TestTenant(t *testing.T) {
	host := func(h string) func(*http.Request) { return func(r *http.Request) { r.Host = h } }
	runKeyCases(t, ratelimit.Tenant("X-Tenant"), []keyCase{
		{"header", func(r *http.Request) { r.Header.Set("X-Tenant", "acme") }, "acme", true},
		{"header wins over host", func(r *http.Request) { r.Host = "other.api.example.com"; r.Header.Set("X-Tenant", "acme") }, "acme", true},
		{"subdomain", host("acme.api.example.com"), "acme", true},
		{"subdomain with port", host("acme.api.example.com:8443"), "acme", true},
		{"two labels", host("example.com"), "", false},
		{"IP host", host("192.0.2.1:80"), "", false},
		{"IPv6 host", host("[2001:db8::1]:80"), "", false},
		{"leading dot", host(".api.example.com"), "", false},
	})
	runKeyCases(t, ratelimit.Tenant(""), []keyCase{
		{"header not read", func(r *http.Request) { r.Host = "example.com"; r.Header.Set("X-Tenant", "acme") }, "", false},
	})
}

type userKey struct{}

type stringer string

func (s stringer) String() string { return string(s) }

func TestUserAndContextValue(t *testing.T) {
	with := func(v any) func(*http.Request) {
		return func(r *http.Request) { *r = *r.WithContext(context.WithValue(r.Context(), userKey{}, v)) }
	}
	runKeyCases(t, ratelimit.ContextValue(userKey{}), []keyCase{
		{"string", with("ann"), "ann", true},
		{"stringer", with(stringer("bob")), "bob", true},
		{"empty", with(""), "", false},
		{"other type", with(42), "", false},
		{"missing", nil, "", false},
	})
	f := ratelimit.User(func(ctx context.Context) (string, bool) {
		u, ok := ctx.Value(userKey{}).(string)
		return u, ok
	})
	runKeyCases(t, f, []keyCase{
		{"authenticated", with("ann"), "ann", true},
		{"anonymous", nil, "", false},
	})
}

func TestRoute(t *testing.T) {
	var got string
	var gotOK bool
	mux := http.NewServeMux()
	mux.HandleFunc("POST /items/{id}", func(w http.ResponseWriter, r *http.Request) {
		got, gotOK = ratelimit.Route()(r)
	})
	mux.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/items/42", nil))
	if got != "POST /items/{id}" || !gotOK {
		t.Errorf("inside the mux: (%q, %v), want the pattern", got, gotOK)
	}
	// Outside a mux there is no pattern.
	if v, ok := ratelimit.Route()(httptest.NewRequest("GET", "/x", nil)); ok {
		t.Errorf("outside a mux: (%q, true), want no value", v)
	}
}

func TestNamed(t *testing.T) {
	ks := ratelimit.Named("login", ratelimit.By("user", ratelimit.Const("ann")))
	r := httptest.NewRequest("GET", "/", nil)
	if len(ks) != 2 || ks[0].Name != ratelimit.GenericKey || ks[1].Name != "user" {
		t.Fatalf("Named = %+v", ks)
	}
	if v, _ := ks[0].Value(r); v != "login" {
		t.Errorf("generic_key value %q, want login", v)
	}
}

func TestClientIPv6Prefix(t *testing.T) {
	runKeyCases(t, ratelimit.ClientIP(ratelimit.ClientIPOptions{IPv6Prefix: 64}), []keyCase{
		{"IPv6 grouped", remote("[2001:db8:1:2:aaaa::1]:1"), "2001:db8:1:2::/64", true},
		{"same /64", remote("[2001:db8:1:2:bbbb::9]:1"), "2001:db8:1:2::/64", true},
		{"IPv4 untouched", remote("192.0.2.1:1"), "192.0.2.1", true},
		{"mapped IPv4 untouched", remote("[::ffff:192.0.2.1]:1"), "192.0.2.1", true},
	})
	runKeyCases(t, ratelimit.ClientIP(ratelimit.ClientIPOptions{IPv6Prefix: 999}), []keyCase{
		{"above 128", remote("[2001:db8::1]:1"), "2001:db8::1/128", true},
	})
}

func TestResolve(t *testing.T) {
	o := ratelimit.ClientIPOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct {
		peer string
		xff  []string
		want string
		ok   bool
	}{
		{"10.0.0.1:5", []string{"6.6.6.6, 198.51.100.1"}, "198.51.100.1", true},
		{"10.0.0.1", []string{"198.51.100.1"}, "198.51.100.1", true},
		{"203.0.113.1:5", []string{"198.51.100.1"}, "203.0.113.1", true},
		{"not an address", nil, "", false},
	} {
		got, ok := o.Resolve(tc.peer, tc.xff)
		if got != tc.want || ok != tc.ok {
			t.Errorf("Resolve(%q, %q) = (%q, %v), want (%q, %v)", tc.peer, tc.xff, got, ok, tc.want, tc.ok)
		}
	}
}
