package extract

import (
	"net/netip"
	"strings"
	"testing"
)

// fuzzExtractor uses every source, with X-Forwarded-For trusted through
// proxy prefixes, so that FuzzExtract reaches every parser.
func fuzzExtractor(t testing.TB) *Extractor {
	ids := identitiesForTest(t)
	return mustExtractor(t, ids, Settings{
		Domain:        "edge",
		MaxValueBytes: 64,
		ClientIP:      ClientIPOptions{TrustedProxies: []string{"10.0.0.0/8", "fd00::/8"}},
		APIKey:        APIKeyOptions{Sources: []KeySource{{Header: "authorization", Scheme: "Bearer"}, {Query: "api_key"}}},
		Tenant:        TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}, {Host: HostFirstLabel}}},
		Tier:          TierOptions{Header: "x-plan", Trusted: true},
		Descriptors: []DescriptorSpec{
			{Name: "ip", Entries: []EntrySpec{{From: FromClientIP, V4Mask: 24, V6Mask: 64, Missing: MissingSkip}}},
			{Name: "full_ip", Entries: []EntrySpec{{From: FromClientIP, Key: "ip", Missing: MissingSkip}}},
			{Name: "key", Entries: []EntrySpec{{From: FromAPIKey}, {From: FromTier, Missing: MissingDefault, Default: "free"}}},
			{Name: "route", Entries: []EntrySpec{{From: FromMethod}, {From: FromPath, Template: "/users/{id}/items/{item}", Capture: "item"}}},
			{Name: "prefix", Entries: []EntrySpec{{From: FromPath, Prefix: "/api/"}}},
			{Name: "path", Entries: []EntrySpec{{From: FromPath}}},
			{Name: "q", Entries: []EntrySpec{{From: FromQuery, Query: "page", Key: "page"}}},
			{Name: "tenant", Entries: []EntrySpec{{From: FromTenant}, {From: FromHeader, Header: "x-user", Key: "user", Missing: MissingDefault, Default: "anon"}}},
			{Name: "deny", Entries: []EntrySpec{{From: FromHeader, Header: "x-required", Key: "r", Missing: MissingDeny, DenyStatus: 401}}},
		},
	})
}

// FuzzExtract feeds arbitrary requests to an extractor using every source.
// Extraction must never panic, must be deterministic, must bound every value,
// must only emit valid client addresses, and must never show an API key in
// clear. Seeds: testdata/fuzz/FuzzExtract.
func FuzzExtract(f *testing.F) {
	x := fuzzExtractor(f)
	f.Add("GET", "acme.example:443", "/users/1/items/2?page=3&api_key=k", "6.6.6.6, 198.51.100.9, 10.1.1.1", "10.0.0.2", "Bearer key-pro-123", "globex", "pro", "u", "yes")
	f.Fuzz(func(t *testing.T, method, host, target, xff, peer, auth, tenant, plan, user, required string) {
		r := &Request{Method: method, Host: host, Headers: map[string]string{
			"x-forwarded-for": xff, "authorization": auth, "x-tenant": tenant, "x-plan": plan, "x-user": user,
		}}
		if required != "" {
			r.Headers["x-required"] = required
		}
		r.SetPathQuery(target)
		r.Peer, _ = netip.ParseAddr(peer)

		var e1, e2 Extraction
		x.Extract(r, extractNow, &e1)
		x.Extract(r, extractNow, &e2)
		if a, b := formatExtraction(&e1), formatExtraction(&e2); a != b {
			t.Fatalf("not deterministic: %q then %q", a, b)
		}
		if e1.Denied {
			if required != "" || e1.DenyStatus != 401 {
				t.Fatalf("denied with %d although x-required is %q", e1.DenyStatus, required)
			}
			return
		}
		if len(e1.Descriptors) != len(e1.Names) {
			t.Fatalf("got %d descriptors and %d names", len(e1.Descriptors), len(e1.Names))
		}
		key := apiKeyFrom(&x.s.APIKey.Sources[0], r)
		if key == "" {
			key, _ = QueryValue(r.Query, "api_key")
		}
		// A key the request also sends elsewhere (in x-user, say) may show
		// there: only its own sources must never leak it.
		elsewhere := strings.Join([]string{method, host, r.Path, xff, peer, tenant, plan, user, required}, "\x00")
		if strings.Contains(elsewhere, key) {
			key = ""
		}
		for i, d := range e1.Descriptors {
			for _, en := range d {
				if en.Key == "" || en.Value == "" {
					t.Fatalf("%s: empty key or value in %v", e1.Names[i], d)
				}
				if len(en.Value) > 64 && !strings.HasPrefix(en.Value, hashPrefix) {
					t.Fatalf("%s: value of %d bytes exceeds the bound: %q", e1.Names[i], len(en.Value), en.Value)
				}
				if len(key) >= 12 && strings.Contains(en.Value, key) {
					t.Fatalf("%s: API key %q in clear in %v", e1.Names[i], key, d)
				}
				switch en.Key {
				case "masked_remote_address":
					if _, err := netip.ParsePrefix(en.Value); err != nil {
						t.Fatalf("masked address %q: %v", en.Value, err)
					}
				case "ip":
					if _, err := netip.ParseAddr(en.Value); err != nil {
						t.Fatalf("address %q: %v", en.Value, err)
					}
				}
			}
		}
	})
}

func BenchmarkExtract(b *testing.B) {
	x := fuzzExtractor(b)
	r := &Request{
		Method: "GET", Host: "acme.api.example", Path: "/users/42/items/7", Query: "page=2",
		Peer: netip.MustParseAddr("10.0.0.2"),
		Headers: map[string]string{
			"x-forwarded-for": "203.0.113.9, 10.1.1.1", "authorization": "Bearer key-pro-123",
			"x-user": "alice", "x-required": "1", "user-agent": "bench", "accept": "*/*",
		},
	}
	var e Extraction
	x.Extract(r, extractNow, &e)
	if e.Denied || len(e.Descriptors) != 8 {
		b.Fatalf("setup: got %s, want 8 descriptors", formatExtraction(&e))
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			x.Extract(r, extractNow, &e)
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var e Extraction
			for pb.Next() {
				x.Extract(r, extractNow, &e)
			}
		})
	})
}

// FuzzCanonicalKey: whatever a client sends as an API key, its canonical
// form is the listed id only for the listed key itself (never for an id,
// a digest or a hash form sent as a key) and otherwise HashValue of what
// was sent, so the raw value never survives; a rule-file literal
// (RuleKeyValue) lands on the same form as the request that sends it.
func FuzzCanonicalKey(f *testing.F) {
	ids, err := ListIdentities(Settings{APIKeys: []KeyListing{{ID: "acme-prod", Key: "demo-pro-key"}}})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"demo-pro-key", "acme-prod", HashValue("demo-pro-key"), "sha256:", "", "\xff", "Demo-Pro-Key"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got := string(ids.AppendKeyID(nil, v, extractNow))
		switch {
		case v == "demo-pro-key":
			if got != "acme-prod" {
				t.Fatalf("the listed key gives %q, want its id", got)
			}
		case got != HashValue(v) || !isHashed(got):
			t.Fatalf("unlisted %q gives %q, want HashValue %q", v, got, HashValue(v))
		}
		if strings.Contains(v, "*") || isHashed(v) || v == "acme-prod" || v == "" {
			return // patterns and canonical forms stay as written in rule files
		}
		if rule := ids.RuleKeyValue(v); rule != got {
			t.Fatalf("rule literal %q canonicalises to %q, a request sending it to %q", v, rule, got)
		}
	})
}
