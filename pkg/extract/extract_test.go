package extract

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/limiter"
)

var extractNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// mustExtractor builds an Extractor or fails the test.
func mustExtractor(t testing.TB, ids *Identities, s Settings) *Extractor {
	t.Helper()
	x, err := New(s, ids)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return x
}

// oneEntry is a Settings with one descriptor of one entry.
func oneEntry(e EntrySpec) Settings {
	return Settings{Domain: "edge", Descriptors: []DescriptorSpec{{Name: "d", Entries: []EntrySpec{e}}}}
}

// formatExtraction renders an extraction for comparisons: "deny 401" or the
// descriptors separated by ";".
func formatExtraction(e *Extraction) string {
	if e.Denied {
		return fmt.Sprintf("deny %d", e.DenyStatus)
	}
	parts := make([]string, len(e.Descriptors))
	for i, d := range e.Descriptors {
		parts[i] = e.Names[i] + d.String()
	}
	return strings.Join(parts, ";")
}

func TestClientIP(t *testing.T) {
	many := strings.Repeat("10.9.9.9, ", 10000) + "198.51.100.9"
	manyTrusted := "198.51.100.9, " + strings.Repeat("10.9.9.9, ", 100) + "10.0.0.3"
	proxies := []string{"10.0.0.0/8", "fd00::/8"}
	tests := []struct {
		name   string
		ip     ClientIPOptions
		peer   string
		xff    string
		v4, v6 int
		want   string // "" for missing
	}{
		{name: "peer", peer: "203.0.113.7", want: "203.0.113.7"},
		{name: "peer ignores spoofed xff", peer: "203.0.113.7", xff: "1.1.1.1", want: "203.0.113.7"},
		{name: "no peer", want: ""},
		{name: "mapped peer", peer: "::ffff:198.51.100.9", want: "198.51.100.9"},
		{name: "ipv6 peer", peer: "2001:db8::1", want: "2001:db8::1"},
		{name: "peer masked /24", peer: "198.51.100.9", v4: 24, v6: 64, want: "198.51.100.0/24"},
		{name: "ipv6 peer masked /64", peer: "2001:db8:1:2:3:4:5:6", v4: 24, v6: 64, want: "2001:db8:1:2::/64"},
		{name: "ipv4 unmasked when only v6 mask", peer: "198.51.100.9", v6: 64, want: "198.51.100.9"},
		{name: "one hop takes right-most", ip: ClientIPOptions{TrustedHops: 1}, peer: "10.0.0.1", xff: "1.1.1.1, 198.51.100.9", want: "198.51.100.9"},
		{name: "two hops skip spoofed left-most", ip: ClientIPOptions{TrustedHops: 2}, peer: "10.0.0.1", xff: "6.6.6.6,198.51.100.9, 10.0.0.5", want: "198.51.100.9"},
		{name: "fewer entries than hops", ip: ClientIPOptions{TrustedHops: 2}, peer: "10.0.0.1", xff: "198.51.100.9", want: ""},
		{name: "hops without xff", ip: ClientIPOptions{TrustedHops: 1}, peer: "10.0.0.1", want: ""},
		{name: "hop entry with port", ip: ClientIPOptions{TrustedHops: 1}, xff: "198.51.100.9:5555", want: "198.51.100.9"},
		{name: "hop entry bracketed ipv6 with port", ip: ClientIPOptions{TrustedHops: 1}, xff: "[2001:db8::5]:443", want: "2001:db8::5"},
		{name: "hop entry bracketed ipv6", ip: ClientIPOptions{TrustedHops: 1}, xff: "[2001:db8::5]", want: "2001:db8::5"},
		{name: "hop entry with zone", ip: ClientIPOptions{TrustedHops: 1}, xff: "fe80::1%eth0", want: "fe80::1"},
		{name: "hop entry unknown", ip: ClientIPOptions{TrustedHops: 1}, xff: "198.51.100.9, unknown", want: ""},
		{name: "hop entry empty", ip: ClientIPOptions{TrustedHops: 2}, xff: "198.51.100.9, ,10.0.0.1", want: ""},
		{name: "hop entry garbage", ip: ClientIPOptions{TrustedHops: 1}, xff: "1.2.3.4.5", want: ""},
		{name: "hop entry too long", ip: ClientIPOptions{TrustedHops: 1}, xff: strings.Repeat("1", 100), want: ""},
		{name: "hop masked", ip: ClientIPOptions{TrustedHops: 1}, xff: "2001:db8:aa:bb::1", v6: 48, want: "2001:db8:aa::/48"},
		{name: "many entries one hop", ip: ClientIPOptions{TrustedHops: 1}, xff: many, want: "198.51.100.9"},
		{name: "proxies: untrusted peer", ip: ClientIPOptions{TrustedProxies: proxies}, peer: "203.0.113.7", xff: "1.1.1.1", want: "203.0.113.7"},
		{name: "proxies: walk to first untrusted", ip: ClientIPOptions{TrustedProxies: proxies}, peer: "10.0.0.2", xff: "6.6.6.6, 198.51.100.9, 10.1.1.1", want: "198.51.100.9"},
		{name: "proxies: ipv6 chain", ip: ClientIPOptions{TrustedProxies: proxies}, peer: "fd00::2", xff: "2001:db8::7, fd00::9", want: "2001:db8::7"},
		{name: "proxies: all trusted takes left-most", ip: ClientIPOptions{TrustedProxies: proxies}, peer: "10.0.0.2", xff: "10.0.0.3", want: "10.0.0.3"},
		{name: "proxies: trusted peer without xff", ip: ClientIPOptions{TrustedProxies: proxies}, peer: "10.0.0.2", want: "10.0.0.2"},
		{name: "proxies: malformed before untrusted", ip: ClientIPOptions{TrustedProxies: proxies}, peer: "10.0.0.2", xff: "198.51.100.9, bogus, 10.1.1.1", want: ""},
		{name: "proxies: malformed behind untrusted is ignored", ip: ClientIPOptions{TrustedProxies: proxies}, peer: "10.0.0.2", xff: "bogus, 198.51.100.9", want: "198.51.100.9"},
		{name: "proxies: walk is bounded", ip: ClientIPOptions{TrustedProxies: proxies}, peer: "10.0.0.2", xff: manyTrusted, want: ""},
		{name: "proxies: no peer", ip: ClientIPOptions{TrustedProxies: proxies}, xff: "198.51.100.9", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// missing: skip, so that an address not found shows as no descriptor.
			opts := oneEntry(EntrySpec{From: FromClientIP, Key: "ip", V4Mask: tc.v4, V6Mask: tc.v6, Missing: MissingSkip})
			opts.ClientIP = tc.ip
			x := mustExtractor(t, nil, opts)
			r := &Request{Headers: map[string]string{}}
			if tc.peer != "" {
				r.Peer = netip.MustParseAddr(tc.peer)
			}
			if tc.xff != "" {
				r.Headers["x-forwarded-for"] = tc.xff
			}
			var e Extraction
			x.Extract(r, extractNow, &e)
			want := ""
			if tc.want != "" {
				want = "d(ip=" + tc.want + ")"
			}
			if got := formatExtraction(&e); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestExtractSources(t *testing.T) {
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name  string
		entry EntrySpec
		req   Request
		want  string
	}{
		{name: "header", entry: EntrySpec{From: FromHeader, Header: "X-User", Key: "user"}, req: Request{Headers: map[string]string{"x-user": "alice"}}, want: "d(user=alice)"},
		{name: "header missing skips", entry: EntrySpec{From: FromHeader, Header: "x-user", Key: "user"}, want: ""},
		{name: "header empty is missing", entry: EntrySpec{From: FromHeader, Header: "x-user", Key: "user"}, req: Request{Headers: map[string]string{"x-user": ""}}, want: ""},
		{name: "header missing default", entry: EntrySpec{From: FromHeader, Header: "x-user", Key: "user", Missing: MissingDefault, Default: "anon"}, want: "d(user=anon)"},
		{name: "header missing deny default status", entry: EntrySpec{From: FromHeader, Header: "x-user", Key: "user", Missing: MissingDeny}, want: "deny 403"},
		{name: "header missing deny 401", entry: EntrySpec{From: FromHeader, Header: "x-user", Key: "user", Missing: MissingDeny, DenyStatus: 401}, want: "deny 401"},
		{name: "header very long is hashed", entry: EntrySpec{From: FromHeader, Header: "x-user", Key: "user"}, req: Request{Headers: map[string]string{"x-user": long}}, want: "d(user=" + HashValue(long) + ")"},
		{name: "query", entry: EntrySpec{From: FromQuery, Query: "page", Key: "page"}, req: Request{Query: "a=1&page=2&page=3"}, want: "d(page=2)"},
		{name: "query escaped", entry: EntrySpec{From: FromQuery, Query: "q", Key: "q"}, req: Request{Query: "q=a%20b+c"}, want: "d(q=a b c)"},
		{name: "query escaped name", entry: EntrySpec{From: FromQuery, Query: "page", Key: "page"}, req: Request{Query: "pa%67e=7"}, want: "d(page=7)"},
		{name: "query malformed escape", entry: EntrySpec{From: FromQuery, Query: "q", Key: "q"}, req: Request{Query: "q=%zz"}, want: ""},
		{name: "query empty value", entry: EntrySpec{From: FromQuery, Query: "q", Key: "q"}, req: Request{Query: "q=&x=1"}, want: ""},
		{name: "query absent", entry: EntrySpec{From: FromQuery, Query: "q", Key: "q"}, req: Request{Query: "qq=1"}, want: ""},
		{name: "query prefix of name", entry: EntrySpec{From: FromQuery, Query: "q", Key: "q"}, req: Request{Query: "q"}, want: ""},
		{name: "path full", entry: EntrySpec{From: FromPath}, req: Request{Path: "/a/b"}, want: "d(path=/a/b)"},
		{name: "path empty", entry: EntrySpec{From: FromPath}, want: ""},
		{name: "path exact", entry: EntrySpec{From: FromPath, Exact: "/login"}, req: Request{Path: "/login"}, want: "d(path=/login)"},
		{name: "path exact mismatch", entry: EntrySpec{From: FromPath, Exact: "/login"}, req: Request{Path: "/login/x"}, want: ""},
		{name: "path prefix", entry: EntrySpec{From: FromPath, Prefix: "/api/"}, req: Request{Path: "/api/v1/x"}, want: "d(path=/api/)"},
		{name: "path template", entry: EntrySpec{From: FromPath, Template: "/users/{id}/posts"}, req: Request{Path: "/users/42/posts"}, want: "d(path=/users/{id}/posts)"},
		{name: "path template capture", entry: EntrySpec{From: FromPath, Key: "user", Template: "/users/{id}/posts", Capture: "id"}, req: Request{Path: "/users/42/posts"}, want: "d(user=42)"},
		{name: "path template too short", entry: EntrySpec{From: FromPath, Template: "/users/{id}/posts"}, req: Request{Path: "/users/42"}, want: ""},
		{name: "path template too long", entry: EntrySpec{From: FromPath, Template: "/users/{id}"}, req: Request{Path: "/users/42/posts"}, want: ""},
		{name: "path template empty param", entry: EntrySpec{From: FromPath, Template: "/users/{id}"}, req: Request{Path: "/users/"}, want: ""},
		{name: "path template trailing slash literal", entry: EntrySpec{From: FromPath, Template: "/users/{id}/"}, req: Request{Path: "/users/1/"}, want: "d(path=/users/{id}/)"},
		{name: "method", entry: EntrySpec{From: FromMethod}, req: Request{Method: "GET"}, want: "d(method=GET)"},
		{name: "method listed", entry: EntrySpec{From: FromMethod, Methods: []string{"POST", "PUT"}}, req: Request{Method: "PUT"}, want: "d(method=PUT)"},
		{name: "method not listed", entry: EntrySpec{From: FromMethod, Methods: []string{"POST"}}, req: Request{Method: "GET"}, want: ""},
		{name: "method too long", entry: EntrySpec{From: FromMethod}, req: Request{Method: long}, want: ""},
		{name: "generic", entry: EntrySpec{From: FromGeneric, Value: "global"}, want: "d(generic_key=global)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := mustExtractor(t, nil, oneEntry(tc.entry))
			var e Extraction
			x.Extract(&tc.req, extractNow, &e)
			if got := formatExtraction(&e); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// TestClientIPMissingDefault: a client_ip entry without a missing policy
// denies when no address is found (a client that bypassed the trusted
// proxies must not go unlimited per address); other sources skip.
func TestClientIPMissingDefault(t *testing.T) {
	opts := Settings{Descriptors: []DescriptorSpec{
		{Name: "ip", Entries: []EntrySpec{{From: FromClientIP}}},
	}, ClientIP: ClientIPOptions{TrustedHops: 2}}
	x := mustExtractor(t, nil, opts)
	var e Extraction
	x.Extract(&Request{Peer: netip.MustParseAddr("10.0.0.1"), Headers: map[string]string{"x-forwarded-for": "198.51.100.9"}}, extractNow, &e)
	if !e.Denied || e.DenyStatus != DefaultDenyStatus {
		t.Errorf("one X-Forwarded-For entry, trusted_hops 2: got denied %v status %d, want denied %d", e.Denied, e.DenyStatus, DefaultDenyStatus)
	}
	x = mustExtractor(t, nil, oneEntry(EntrySpec{From: FromHeader, Header: "x-user", Key: "user"}))
	e.Reset()
	x.Extract(&Request{Headers: map[string]string{}}, extractNow, &e)
	if e.Denied || formatExtraction(&e) != "" {
		t.Errorf("header entry without its header: got %q (denied %v), want skipped", formatExtraction(&e), e.Denied)
	}
	if _, err := New(oneEntry(EntrySpec{From: FromClientIP, DenyStatus: 429}), nil); err != nil {
		t.Errorf("deny_status on a client_ip entry without missing: %v; want accepted (deny is its default)", err)
	}
}

func TestExtractDescriptors(t *testing.T) {
	x := mustExtractor(t, nil, Settings{
		Domain: "edge",
		Descriptors: []DescriptorSpec{
			{Name: "per_ip", Entries: []EntrySpec{{From: FromClientIP, Missing: MissingSkip}}},
			{Name: "per_user_route", Entries: []EntrySpec{
				{From: FromHeader, Header: "x-user", Key: "user"},
				{From: FromPath, Key: "route", Template: "/users/{id}"},
			}},
			{Name: "writes", Entries: []EntrySpec{{From: FromMethod, Methods: []string{"POST"}}}},
			{Name: "global", Entries: []EntrySpec{{From: FromGeneric, Value: "all"}}},
		},
	})
	tests := []struct {
		name string
		req  Request
		want string
	}{
		{
			name: "all",
			req:  Request{Method: "POST", Path: "/users/7", Peer: netip.MustParseAddr("192.0.2.1"), Headers: map[string]string{"x-user": "u1"}},
			want: "per_ip(remote_address=192.0.2.1);per_user_route(user=u1, route=/users/{id});writes(method=POST);global(generic_key=all)",
		},
		{
			name: "second entry missing drops only its descriptor",
			req:  Request{Method: "GET", Path: "/other", Peer: netip.MustParseAddr("192.0.2.1"), Headers: map[string]string{"x-user": "u1"}},
			want: "per_ip(remote_address=192.0.2.1);global(generic_key=all)",
		},
		{
			name: "no peer",
			req:  Request{Method: "GET", Path: "/users/7", Headers: map[string]string{"x-user": "u1"}},
			want: "per_user_route(user=u1, route=/users/{id});global(generic_key=all)",
		},
	}
	var e Extraction // reused on purpose: nothing may leak between requests
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x.Extract(&tc.req, extractNow, &e)
			if got := formatExtraction(&e); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestExtractDenyStops(t *testing.T) {
	x := mustExtractor(t, nil, Settings{
		Descriptors: []DescriptorSpec{
			{Name: "ip", Entries: []EntrySpec{{From: FromGeneric, Value: "g"}}},
			{Name: "key", Entries: []EntrySpec{{From: FromHeader, Header: "x-api-key", Key: "k", Missing: MissingDeny, DenyStatus: 401}}},
			{Name: "after", Entries: []EntrySpec{{From: FromGeneric, Value: "h"}}},
		},
	})
	var e Extraction
	x.Extract(&Request{}, extractNow, &e)
	if !e.Denied || e.DenyStatus != 401 {
		t.Fatalf("got denied=%v status %d, want denied with 401", e.Denied, e.DenyStatus)
	}
	if want := `descriptor "key": no header for entry "k"`; e.DenyReason != want {
		t.Errorf("got reason %q, want %q", e.DenyReason, want)
	}
	x.Extract(&Request{Headers: map[string]string{"x-api-key": "v"}}, extractNow, &e)
	if got, want := formatExtraction(&e), "ip(generic_key=g);key(k=v);after(generic_key=h)"; got != want {
		t.Errorf("after reuse: got %q, want %q", got, want)
	}
}

func TestExtractManyHeaders(t *testing.T) {
	h := make(map[string]string, 10000)
	for i := range 10000 {
		h[fmt.Sprintf("x-h-%d", i)] = strings.Repeat("v", 100)
	}
	h["x-user"] = "alice"
	x := mustExtractor(t, nil, oneEntry(EntrySpec{From: FromHeader, Header: "x-user", Key: "user"}))
	var e Extraction
	allocs := testing.AllocsPerRun(100, func() { x.Extract(&Request{Headers: h}, extractNow, &e) })
	if got, want := formatExtraction(&e), "d(user=alice)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if allocs != 0 {
		t.Errorf("got %v allocations per extraction, want 0", allocs)
	}
}

// identitiesForTest lists two API keys and two tenants.
func identitiesForTest(t testing.TB) *Identities {
	t.Helper()
	ids, err := NewIdentities(IdentitiesOptions{
		APIKeys: []APIKeyListing{
			{Digest: HashAPIKey("key-pro-123"), Identity: Identity{ID: "acme-prod", Tier: "pro", Tenant: "acme"}},
			{Digest: HashAPIKey("key-free-456"), Identity: Identity{ID: "hobby", Tier: "free"}},
			{Digest: HashAPIKey("key-old-789"), Identity: Identity{ID: "old", Tier: "pro", Expires: extractNow.Add(-time.Hour)}},
		},
		Tenants: []Identity{
			{ID: "acme", Tier: "enterprise", Hosts: []string{"api.acme.example"}},
			{ID: "globex", Tier: "pro"},
		},
	})
	if err != nil {
		t.Fatalf("NewIdentities: %v", err)
	}
	return ids
}

func TestExtractIdentity(t *testing.T) {
	bearer := []KeySource{{Header: "authorization", Scheme: "Bearer"}, {Header: "x-api-key"}, {Query: "api_key"}}
	tests := []struct {
		name       string
		apiKey     APIKeyOptions
		tenant     TenantOptions
		tier       TierOptions
		req        Request
		wantKey    string
		wantTenant string
		wantTier   string
	}{
		{name: "bearer listed", apiKey: APIKeyOptions{Sources: bearer}, req: Request{Headers: map[string]string{"authorization": "Bearer key-pro-123"}},
			wantKey: "acme-prod", wantTenant: "acme", wantTier: "pro"},
		{name: "source header names are case-insensitive", apiKey: APIKeyOptions{Sources: []KeySource{{Header: "Authorization", Scheme: "Bearer"}}},
			tenant: TenantOptions{Sources: []TenantSource{{Header: "X-Tenant", Trusted: true}}}, tier: TierOptions{Header: "X-Plan", Trusted: true},
			req:     Request{Headers: map[string]string{"authorization": "Bearer key-free-456", "x-tenant": "initech", "x-plan": "ignored"}},
			wantKey: "hobby", wantTenant: "initech", wantTier: "free"},
		{name: "bearer scheme case and spaces", apiKey: APIKeyOptions{Sources: bearer}, req: Request{Headers: map[string]string{"authorization": "bearer   key-free-456 "}},
			wantKey: "hobby", wantTier: "free"},
		{name: "other scheme falls through to x-api-key", apiKey: APIKeyOptions{Sources: bearer}, req: Request{Headers: map[string]string{"authorization": "Basic Zm9v", "x-api-key": "key-free-456"}},
			wantKey: "hobby", wantTier: "free"},
		{name: "bearer without token", apiKey: APIKeyOptions{Sources: bearer[:1]}, req: Request{Headers: map[string]string{"authorization": "Bearer"}}},
		{name: "query key", apiKey: APIKeyOptions{Sources: bearer}, req: Request{Query: "api_key=key-pro-123"},
			wantKey: "acme-prod", wantTenant: "acme", wantTier: "pro"},
		{name: "unlisted key is hashed", apiKey: APIKeyOptions{Sources: bearer}, req: Request{Headers: map[string]string{"x-api-key": "secret-unlisted"}},
			wantKey: HashValue("secret-unlisted")},
		{name: "unlisted key ignored when listed only", apiKey: APIKeyOptions{Sources: bearer, ListedOnly: true}, req: Request{Headers: map[string]string{"x-api-key": "secret-unlisted"}}},
		{name: "listed only tries the next source", apiKey: APIKeyOptions{Sources: bearer, ListedOnly: true}, req: Request{Headers: map[string]string{"authorization": "Bearer nope", "x-api-key": "key-free-456"}},
			wantKey: "hobby", wantTier: "free"},
		{name: "expired key is unlisted", apiKey: APIKeyOptions{Sources: bearer}, req: Request{Headers: map[string]string{"x-api-key": "key-old-789"}},
			wantKey: HashValue("key-old-789")},
		{name: "tenant header", tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}}, req: Request{Headers: map[string]string{"x-tenant": "globex"}},
			wantTenant: "globex", wantTier: "pro"},
		{name: "tenant header unlisted", tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}}, req: Request{Headers: map[string]string{"x-tenant": "initech"}},
			wantTenant: "initech"},
		{name: "tenant header unlisted, listed only", tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}, ListedOnly: true}, req: Request{Headers: map[string]string{"x-tenant": "initech"}}},
		{name: "tenant header malformed", tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}}, req: Request{Headers: map[string]string{"x-tenant": "a b"}}},
		{name: "tenant from listed host with port", tenant: TenantOptions{Sources: []TenantSource{{Host: HostListed}}}, req: Request{Host: "API.acme.example:8443"},
			wantTenant: "acme", wantTier: "enterprise"},
		{name: "tenant from first label", tenant: TenantOptions{Sources: []TenantSource{{Host: HostFirstLabel}}}, req: Request{Host: "Globex.api.example"},
			wantTenant: "globex", wantTier: "pro"},
		{name: "tenant from ipv6 host", tenant: TenantOptions{Sources: []TenantSource{{Host: HostFirstLabel}}}, req: Request{Host: "[::1]:80"}},
		{name: "key tenant wins over header", apiKey: APIKeyOptions{Sources: bearer}, tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}},
			req:     Request{Headers: map[string]string{"x-api-key": "key-pro-123", "x-tenant": "globex"}},
			wantKey: "acme-prod", wantTenant: "acme", wantTier: "pro"},
		{name: "tier header", tier: TierOptions{Header: "x-plan", Trusted: true}, req: Request{Headers: map[string]string{"x-plan": "gold"}}, wantTier: "gold"},
		{name: "tier header malformed", tier: TierOptions{Header: "x-plan", Trusted: true}, req: Request{Headers: map[string]string{"x-plan": "gold:x"}}},
		{name: "listed tier wins over header", apiKey: APIKeyOptions{Sources: bearer}, tier: TierOptions{Header: "x-plan", Trusted: true},
			req: Request{Headers: map[string]string{"x-api-key": "key-free-456", "x-plan": "pro"}}, wantKey: "hobby", wantTier: "free"},
		{name: "tenant tier when key has none", apiKey: APIKeyOptions{Sources: bearer}, tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}},
			req: Request{Headers: map[string]string{"x-api-key": "unlisted", "x-tenant": "globex"}}, wantKey: HashValue("unlisted"), wantTenant: "globex", wantTier: "pro"},
	}
	ids := identitiesForTest(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := mustExtractor(t, ids, Settings{
				APIKey: tc.apiKey, Tenant: tc.tenant, Tier: tc.tier,
				Descriptors: []DescriptorSpec{{Entries: []EntrySpec{{From: FromGeneric, Value: "x"}}}},
			})
			var e Extraction
			x.Extract(&tc.req, extractNow, &e)
			if e.APIKeyID != tc.wantKey || e.Tenant != tc.wantTenant || e.Tier != tc.wantTier {
				t.Errorf("got key %q tenant %q tier %q, want %q %q %q", e.APIKeyID, e.Tenant, e.Tier, tc.wantKey, tc.wantTenant, tc.wantTier)
			}
		})
	}
}

func TestAPIKeyNeverInClear(t *testing.T) {
	const secret = "sk_live_0123456789abcdef"
	x := mustExtractor(t, nil, Settings{
		APIKey: APIKeyOptions{Sources: []KeySource{{Header: "authorization", Scheme: "Bearer"}}},
		Descriptors: []DescriptorSpec{
			{Name: "key", Entries: []EntrySpec{{From: FromAPIKey}}},
			{Name: "deny", Entries: []EntrySpec{{From: FromHeader, Header: "x-missing", Key: "m", Missing: MissingDeny}}},
		},
	})
	var e Extraction
	x.Extract(&Request{Headers: map[string]string{"authorization": "Bearer " + secret}}, extractNow, &e)
	dump := fmt.Sprintf("%+v", e)
	if strings.Contains(dump, secret) {
		t.Errorf("extraction shows the key in clear: %s", dump)
	}
	x2 := mustExtractor(t, nil, Settings{
		APIKey:      APIKeyOptions{Sources: []KeySource{{Header: "authorization", Scheme: "Bearer"}}},
		Descriptors: []DescriptorSpec{{Name: "key", Entries: []EntrySpec{{From: FromAPIKey}}}},
	})
	x2.Extract(&Request{Headers: map[string]string{"authorization": "Bearer " + secret}}, extractNow, &e)
	if got, want := formatExtraction(&e), "key(api_key="+HashValue(secret)+")"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestIdentityEntries(t *testing.T) {
	ids := identitiesForTest(t)
	x := mustExtractor(t, ids, Settings{
		APIKey: APIKeyOptions{Sources: []KeySource{{Header: "x-api-key"}}},
		Tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}},
		Descriptors: []DescriptorSpec{
			{Name: "key", Entries: []EntrySpec{{From: FromAPIKey, Missing: MissingDeny, DenyStatus: 401}, {From: FromTier, Key: "plan", Missing: MissingDefault, Default: "free"}}},
			{Name: "tenant", Entries: []EntrySpec{{From: FromTenant}}},
		},
	})
	tests := []struct {
		name string
		hdr  map[string]string
		want string
	}{
		{name: "listed", hdr: map[string]string{"x-api-key": "key-pro-123"}, want: "key(api_key=acme-prod, plan=pro);tenant(tenant=acme)"},
		{name: "default tier", hdr: map[string]string{"x-api-key": "other", "x-tenant": "initech"}, want: "key(api_key=" + HashValue("other") + ", plan=free);tenant(tenant=initech)"},
		{name: "no key denies", hdr: map[string]string{"x-tenant": "initech"}, want: "deny 401"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e Extraction
			x.Extract(&Request{Headers: tc.hdr}, extractNow, &e)
			if got := formatExtraction(&e); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestNewExtractorErrors(t *testing.T) {
	tests := []struct {
		name string
		opts Settings
		ids  *Identities
		want string
	}{
		{name: "no descriptors", opts: Settings{}, want: "descriptors: none"},
		{name: "no entries", opts: Settings{Descriptors: []DescriptorSpec{{Name: "a"}}}, want: "descriptors[0].entries: none"},
		{name: "hops and proxies", opts: Settings{ClientIP: ClientIPOptions{TrustedHops: 1, TrustedProxies: []string{"10.0.0.0/8"}}, Descriptors: oneEntry(EntrySpec{From: FromClientIP}).Descriptors}, want: "not both"},
		{name: "too many hops", opts: Settings{ClientIP: ClientIPOptions{TrustedHops: 99}, Descriptors: oneEntry(EntrySpec{From: FromClientIP}).Descriptors}, want: "client_ip.trusted_hops: 99 is out of range"},
		{name: "header needs name", opts: oneEntry(EntrySpec{From: FromHeader, Key: "k"}), want: "descriptors[0].entries[0].header: missing"},
		{name: "query needs key", opts: oneEntry(EntrySpec{From: FromQuery, Query: "q"}), want: "descriptors[0].entries[0].key: missing"},
		{name: "unused field", opts: oneEntry(EntrySpec{From: FromMethod, Header: "x"}), want: "entries[0].header: is not used by from: method"},
		{name: "two path patterns", opts: oneEntry(EntrySpec{From: FromPath, Exact: "/a", Prefix: "/b"}), want: "at most one of exact, prefix, template"},
		{name: "bad template", opts: oneEntry(EntrySpec{From: FromPath, Template: "/a/{b}c"}), want: "want a literal or one whole {param}"},
		{name: "duplicate param", opts: oneEntry(EntrySpec{From: FromPath, Template: "/{a}/{a}"}), want: "duplicate {a}"},
		{name: "capture unknown", opts: oneEntry(EntrySpec{From: FromPath, Template: "/{a}", Capture: "b"}), want: `capture: "b" is not a {param}`},
		{name: "mask range", opts: oneEntry(EntrySpec{From: FromClientIP, V4Mask: 33}), want: "v4_mask: 33 is out of range"},
		{name: "lower-case method", opts: oneEntry(EntrySpec{From: FromMethod, Methods: []string{"get"}}), want: "upper-case"},
		{name: "default without value", opts: oneEntry(EntrySpec{From: FromMethod, Missing: MissingDefault}), want: "needs a default value"},
		{name: "deny status range", opts: oneEntry(EntrySpec{From: FromMethod, Missing: MissingDeny, DenyStatus: 200}), want: "deny_status: 200 is out of range"},
		{name: "deny status without deny", opts: oneEntry(EntrySpec{From: FromMethod, DenyStatus: 401}), want: "only used with missing: deny"},
		{name: "api key without sources", opts: oneEntry(EntrySpec{From: FromAPIKey}), want: "needs api_key.sources"},
		{name: "tenant without sources", opts: oneEntry(EntrySpec{From: FromTenant}), want: "needs tenant.sources"},
		{name: "generic without value", opts: oneEntry(EntrySpec{From: FromGeneric}), want: "value: missing"},
		{name: "unknown source", opts: oneEntry(EntrySpec{From: 99}), want: "unknown source"},
		{name: "descriptor key not the identities'", opts: Settings{APIKey: APIKeyOptions{DescriptorKey: "id"}, Descriptors: oneEntry(EntrySpec{From: FromMethod}).Descriptors}, ids: &Identities{}, want: `api_key.descriptor_key: "id" is not the identities'`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts, tc.ids)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidSettings) {
				t.Errorf("got %v, want it to wrap ErrInvalidSettings", err)
			}
		})
	}
}

func TestNewIdentitiesErrors(t *testing.T) {
	tests := []struct {
		name string
		opts IdentitiesOptions
		want string
	}{
		{name: "bad id", opts: IdentitiesOptions{APIKeys: []APIKeyListing{{Identity: Identity{ID: "a:b"}}}}, want: `api_keys[0].id: "a:b"`},
		{name: "duplicate id", opts: IdentitiesOptions{APIKeys: []APIKeyListing{{Digest: HashAPIKey("1"), Identity: Identity{ID: "a"}}, {Digest: HashAPIKey("2"), Identity: Identity{ID: "a"}}}}, want: "listed twice"},
		{name: "duplicate key", opts: IdentitiesOptions{APIKeys: []APIKeyListing{{Digest: HashAPIKey("1"), Identity: Identity{ID: "a"}}, {Digest: HashAPIKey("1"), Identity: Identity{ID: "b"}}}}, want: `same key as "a"`},
		{name: "duplicate host", opts: IdentitiesOptions{Tenants: []Identity{{ID: "a", Hosts: []string{"x.example"}}, {ID: "b", Hosts: []string{"X.example"}}}}, want: `already a host of tenant "a"`},
		{name: "host with port", opts: IdentitiesOptions{Tenants: []Identity{{ID: "a", Hosts: []string{"x.example:80"}}}}, want: "without port"},
		{name: "bad override", opts: IdentitiesOptions{Tenants: []Identity{{ID: "a", Overrides: []descriptor.LimitOverride{{Limit: limiter.Limit{Requests: 1}}}}}}, want: "overrides[0]"},
		{name: "same keys", opts: IdentitiesOptions{APIKeyKey: "k", TenantKey: "k"}, want: "need different descriptor keys"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewIdentities(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
			if !errors.Is(err, ErrInvalidIdentity) {
				t.Errorf("got %v, want it to wrap ErrInvalidIdentity", err)
			}
		})
	}
}

func TestSetPathQuery(t *testing.T) {
	tests := []struct{ in, path, query string }{
		{in: "/a/b?x=1&y=2#frag", path: "/a/b", query: "x=1&y=2"},
		{in: "/a", path: "/a"},
		{in: "/a#f?x", path: "/a"},
		{in: "?x", path: "", query: "x"},
	}
	for _, tc := range tests {
		var r Request
		r.SetPathQuery(tc.in)
		if r.Path != tc.path || r.Query != tc.query {
			t.Errorf("SetPathQuery(%q): got %q %q, want %q %q", tc.in, r.Path, r.Query, tc.path, tc.query)
		}
	}
}

func TestNames(t *testing.T) {
	for _, s := range []Source{FromClientIP, FromHeader, FromQuery, FromPath, FromMethod, FromAPIKey, FromTenant, FromTier, FromGeneric} {
		var got Source
		text, err := s.MarshalText()
		if err != nil || string(text) != s.String() {
			t.Errorf("MarshalText(%v): got %q, %v", s, text, err)
		}
		if err := got.UnmarshalText(text); err != nil || got != s {
			t.Errorf("UnmarshalText(%q): got %v, %v, want %v", text, got, err, s)
		}
	}
	var src Source
	if err := src.UnmarshalText(nil); err != nil || src != 0 {
		t.Errorf(`UnmarshalText(""): got %v, %v, want the zero Source that New reports as missing`, src, err)
	}
	var none Missing = MissingDeny
	if err := none.UnmarshalText(nil); err != nil || none != MissingUnset {
		t.Errorf(`Missing.UnmarshalText(""): got %v, %v, want unset (the source's default)`, none, err)
	}
	err := src.UnmarshalText([]byte("cookie"))
	if !errors.Is(err, ErrUnknownSource) {
		t.Errorf("UnmarshalText(cookie): got %v, want ErrUnknownSource", err)
	}
	if want := `unknown source "cookie": expected one of client_ip, header, query, path, method, api_key, tenant, tier, generic`; err == nil || err.Error() != want {
		t.Errorf("UnmarshalText(cookie): got %v, want %q", err, want)
	}
	if _, err := New(oneEntry(EntrySpec{From: src, Key: "k"}), nil); err == nil {
		t.Error("New accepted the source an unknown name left")
	}
	for _, m := range []Missing{MissingUnset, MissingSkip, MissingDefault, MissingDeny} {
		got := MissingDeny
		text, _ := m.MarshalText()
		if err := got.UnmarshalText(text); err != nil || got != m {
			t.Errorf("UnmarshalText(%q): got %v, %v, want %v", text, got, err, m)
		}
	}
	var m Missing
	if err := m.UnmarshalText([]byte("ignore")); !errors.Is(err, ErrUnknownMissing) || err.Error() != `unknown policy "ignore": expected skip, default or deny` {
		t.Errorf("UnmarshalText(ignore): got %v, want ErrUnknownMissing", err)
	}
	for _, h := range []HostMode{HostNone, HostListed, HostFirstLabel} {
		var got HostMode
		text, _ := h.MarshalText()
		if err := got.UnmarshalText(text); err != nil || got != h {
			t.Errorf("UnmarshalText(%q): got %v, %v, want %v", text, got, err, h)
		}
	}
	var h HostMode
	if err := h.UnmarshalText([]byte("subdomain")); !errors.Is(err, ErrUnknownHostMode) || err.Error() != `unknown host mode "subdomain": expected listed or first_label` {
		t.Errorf("UnmarshalText(subdomain): got %v, want ErrUnknownHostMode", err)
	}
	if _, err := New(Settings{Tenant: TenantOptions{Sources: []TenantSource{{Host: h}}}, Descriptors: oneEntry(EntrySpec{From: FromTenant}).Descriptors}, nil); err == nil || !strings.Contains(err.Error(), "tenant.sources[0].host: unknown host mode") {
		t.Errorf("New with the host mode an unknown name left: got %v", err)
	}
}

// TestNewFieldErrors checks that New's problems are *field.Error values
// whose paths are relative to the settings, for the config to place.
func TestNewFieldErrors(t *testing.T) {
	_, err := New(Settings{
		MaxValueBytes: 4,
		ClientIP:      ClientIPOptions{TrustedProxies: []string{"not-an-ip"}},
		Descriptors:   []DescriptorSpec{{Entries: []EntrySpec{{From: FromHeader, Key: "h"}, {Key: "k"}}}},
	}, nil)
	var got []string
	field.Each(err, func(path string, e error) { got = append(got, path+" | "+e.Error()) })
	want := []string{
		"max_value_bytes | 4 is too small: want at least 16 (default 256)",
		`client_ip.trusted_proxies[0] | "not-an-ip" is not an address or prefix: expected e.g. 10.0.0.0/8 or 192.0.2.7`,
		"descriptors[0].entries[0].header | missing: from: header needs the header name",
		"descriptors[0].entries[1].from | missing: expected one of client_ip, header, query, path, method, api_key, tenant, tier, generic",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var fe *field.Error
	if !errors.As(err, &fe) {
		t.Errorf("errors.As(*field.Error) = false for %v", err)
	}
}

// TestSettingsZeroValues checks the documented defaults of the zero
// Settings: counters per tenant, values bounded at 256 bytes.
func TestSettingsZeroValues(t *testing.T) {
	x := mustExtractor(t, nil, oneEntry(EntrySpec{From: FromHeader, Header: "x-v", Key: "v"}))
	if !x.Namespaced() {
		t.Error("zero Settings: Namespaced() = false, want true (share_counters defaults to false)")
	}
	var e Extraction
	long := strings.Repeat("v", DefaultMaxValueBytes+1)
	x.Extract(&Request{Headers: map[string]string{"x-v": long}}, extractNow, &e)
	if got, want := formatExtraction(&e), "d(v="+HashValue(long)+")"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestListIdentities checks the listings of Settings: digests from key or
// key_sha256, overrides converted, and every problem with its path.
func TestListIdentities(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	sum := sha256.Sum256([]byte("sk-2"))
	ids, err := ListIdentities(Settings{
		APIKeys: []KeyListing{
			{ID: "one", Key: "sk-1", Tier: "pro"},
			{ID: "two", KeySHA256: hex.EncodeToString(sum[:]), Overrides: []Override{{Rule: "r", Unit: "minute", RequestsPerUnit: n(5)}}},
		},
		Tenants: []TenantListing{{Name: "acme", Hosts: []string{"api.acme.example"}}},
	})
	if err != nil {
		t.Fatalf("ListIdentities: %v", err)
	}
	x := mustExtractor(t, ids, Settings{
		APIKey:      APIKeyOptions{Sources: []KeySource{{Header: "x-api-key"}}},
		Tenant:      TenantOptions{Sources: []TenantSource{{Host: HostListed}}},
		Descriptors: []DescriptorSpec{{Name: "k", Entries: []EntrySpec{{From: FromAPIKey}, {From: FromTenant}}}},
	})
	var e Extraction
	x.Extract(&Request{Host: "api.acme.example", Headers: map[string]string{"x-api-key": "sk-2"}}, extractNow, &e)
	if got := formatExtraction(&e); got != "k(api_key=two, tenant=acme)" {
		t.Errorf("got %q", got)
	}
	if k, _ := ids.APIKey("two", extractNow); len(k.Overrides) != 1 || k.Overrides[0].Limit != perMin(5) {
		t.Errorf("two's overrides: got %+v, want 5 a minute", k.Overrides)
	}

	_, err = ListIdentities(Settings{
		APIKeys: []KeyListing{
			{ID: "a"},
			{ID: "b", Key: "k", KeySHA256: "00"},
			{ID: "c", KeySHA256: "zz", Overrides: []Override{{Unit: "fortnight", RequestsPerUnit: n(1)}, {Unit: "minute"}}},
			{ID: "a", Key: "k2"},
		},
	})
	var got []string
	field.Each(err, func(path string, e error) {
		got = append(got, path)
		if !errors.Is(e, ErrInvalidIdentity) {
			t.Errorf("%s: %v does not match ErrInvalidIdentity", path, e)
		}
	})
	want := []string{"api_keys[0]", "api_keys[1]", "api_keys[2].key_sha256", "api_keys[2].overrides[0].unit", "api_keys[2].overrides[1].requests_per_unit", "api_keys[3].id"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got problems at %v, want %v", got, want)
	}
}
