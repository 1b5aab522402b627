package descriptor

import (
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

func perMinute(n int64) *RateLimit { return &RateLimit{Unit: UnitMinute, RequestsPerUnit: n} }

func named(name string, n int64, replaces ...string) *RateLimit {
	return &RateLimit{Name: name, Unit: UnitSecond, RequestsPerUnit: n, Replaces: replaces}
}

func mustSet(t testing.TB, domains ...Domain) *Set {
	t.Helper()
	s, err := NewSet(domains, Options{})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	return s
}

func desc(kv ...string) Descriptor {
	var d Descriptor
	for i := 0; i+1 < len(kv); i += 2 {
		d = append(d, Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// matchSet is a tree exercising every matching rule.
func matchSet(t testing.TB) *Set {
	return mustSet(t, Domain{Name: "edge", Descriptors: []Node{
		{Key: "remote_address", RateLimit: perMinute(10)},
		{Key: "remote_address", Value: "50.0.0.5", RateLimit: perMinute(0)},
		{Key: "remote_address", Value: "10.*", RateLimit: perMinute(100)},
		{Key: "path", Value: "/api/*/action", RateLimit: perMinute(1)},
		{Key: "path", Value: "/api/*", RateLimit: perMinute(2)},
		{Key: "path", Value: "*.json", RateLimit: perMinute(3)},
		{Key: "path", Value: "/a*b*c", RateLimit: perMinute(4)},
		{Key: "ldap", RateLimit: &RateLimit{Unlimited: true}},
		{Key: "allow"}, // no rate_limit, no children: never limited
		{Key: "client", Value: "vip", Descriptors: []Node{
			{Key: "path", Value: "/special", RateLimit: perMinute(5)},
		}},
		{Key: "client", RateLimit: perMinute(6), Descriptors: []Node{
			{Key: "path", RateLimit: perMinute(7)},
		}},
		{Key: "group", Descriptors: []Node{
			{Key: "user", RateLimit: perMinute(8)},
		}},
	}})
}

func TestMatch(t *testing.T) {
	s := matchSet(t)
	tests := []struct {
		name     string
		domain   string
		d        Descriptor
		wantPath string // "" means no match
	}{
		{name: "key only", domain: "edge", d: desc("remote_address", "1.2.3.4"), wantPath: "edge.remote_address"},
		{name: "exact beats pattern and key only", domain: "edge", d: desc("remote_address", "50.0.0.5"), wantPath: "edge.remote_address_50.0.0.5"},
		{name: "pattern beats key only", domain: "edge", d: desc("remote_address", "10.1.2.3"), wantPath: "edge.remote_address_10.*"},
		{name: "empty value matches key only", domain: "edge", d: desc("remote_address", ""), wantPath: "edge.remote_address"},
		{name: "star in the middle", domain: "edge", d: desc("path", "/api/v1/action"), wantPath: "edge.path_/api/*/action"},
		{name: "star matches slashes", domain: "edge", d: desc("path", "/api/v1/x/action"), wantPath: "edge.path_/api/*/action"},
		{name: "first pattern in file order wins", domain: "edge", d: desc("path", "/api/action"), wantPath: "edge.path_/api/*"},
		{name: "trailing star", domain: "edge", d: desc("path", "/api/v1/users"), wantPath: "edge.path_/api/*"},
		{name: "leading star", domain: "edge", d: desc("path", "/x/data.json"), wantPath: "edge.path_*.json"},
		{name: "several stars", domain: "edge", d: desc("path", "/aXbYc"), wantPath: "edge.path_/a*b*c"},
		{name: "stars match empty runs", domain: "edge", d: desc("path", "/abc"), wantPath: "edge.path_/a*b*c"},
		{name: "pattern literal order matters", domain: "edge", d: desc("path", "/acb"), wantPath: ""},
		{name: "no pattern and no key only", domain: "edge", d: desc("path", "/other"), wantPath: ""},
		{name: "unlimited matches", domain: "edge", d: desc("ldap", "x"), wantPath: "edge.ldap"},
		{name: "node without rate_limit", domain: "edge", d: desc("allow", "x"), wantPath: ""},
		{name: "unknown key", domain: "edge", d: desc("nope", "x"), wantPath: ""},
		{name: "unknown domain", domain: "other", d: desc("remote_address", "1.2.3.4"), wantPath: ""},
		{name: "empty descriptor", domain: "edge", d: nil, wantPath: ""},
		{name: "longer than the tree", domain: "edge", d: desc("remote_address", "1.2.3.4", "path", "/"), wantPath: ""},
		{name: "nested exact", domain: "edge", d: desc("client", "vip", "path", "/special"), wantPath: "edge.client_vip.path_/special"},
		// envoyproxy/ratelimit never backtracks: client=vip selects the exact
		// node, whose subtree has no match for /other, even though the
		// key-only client node has a key-only path child.
		{name: "no backtracking", domain: "edge", d: desc("client", "vip", "path", "/other"), wantPath: ""},
		{name: "nested key only", domain: "edge", d: desc("client", "acme", "path", "/other"), wantPath: "edge.client.path"},
		{name: "rule on an inner node", domain: "edge", d: desc("client", "acme"), wantPath: "edge.client"},
		// The exact client=vip node has no rate_limit of its own.
		{name: "shorter descriptor on a node without rate_limit", domain: "edge", d: desc("client", "vip"), wantPath: ""},
		{name: "shorter than the tree", domain: "edge", d: desc("group", "g"), wantPath: ""},
		{name: "full depth", domain: "edge", d: desc("group", "g", "user", "u"), wantPath: "edge.group.user"},
		{name: "three levels on a two-level tree", domain: "edge", d: desc("group", "g", "user", "u", "x", "y"), wantPath: ""},
		{name: "key order matters", domain: "edge", d: desc("user", "u", "group", "g"), wantPath: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := s.Match(tc.domain, tc.d)
			if ok != (r != nil) {
				t.Fatalf("Match ok = %v with rule %v", ok, r)
			}
			got := ""
			if ok {
				got = r.Path
			}
			if got != tc.wantPath {
				t.Errorf("Match(%q, %s) = %q, want %q", tc.domain, tc.d, got, tc.wantPath)
			}
		})
	}
}

func TestMatchRuleFields(t *testing.T) {
	s := mustSet(t, Domain{Name: "d", Source: "d.yaml:1:1", Descriptors: []Node{
		{Key: "k", Value: "v", ShadowMode: true, DetailedMetric: true, Source: "d.yaml:3:5",
			RateLimit: &RateLimit{Name: "n", Unit: UnitHour, RequestsPerUnit: 42, Algorithm: limiter.TokenBucket, Burst: 7}},
		{Key: "u", RateLimit: &RateLimit{Unlimited: true}},
		{Key: "w", Value: "x*", ValueToMetric: true, RateLimit: &RateLimit{Unit: UnitWeek, RequestsPerUnit: 1}},
	}})
	r, ok := s.Match("d", desc("k", "v"))
	if !ok {
		t.Fatal("no match for k=v")
	}
	want := Rule{Domain: "d", Name: "n", Path: "d.k_v", Unit: "hour", UnitCode: UnitHour, Shadow: true, DetailedMetric: true,
		Limit: limiter.Limit{Requests: 42, Period: time.Hour, Algorithm: limiter.TokenBucket, Burst: 7}, Source: "d.yaml:3:5"}
	got := *r
	got.levels = nil
	if got.Domain != want.Domain || got.Name != want.Name || got.Path != want.Path || got.Unit != want.Unit ||
		got.UnitCode != want.UnitCode || got.Shadow != want.Shadow || got.DetailedMetric != want.DetailedMetric ||
		got.Limit != want.Limit || got.Source != want.Source || got.Unlimited || got.ValueToMetric || got.Override {
		t.Errorf("rule = %+v, want %+v", got, want)
	}
	if u, _ := s.Match("d", desc("u", "1")); !u.Unlimited {
		t.Errorf("u: Unlimited = false, want true")
	}
	if w, _ := s.Match("d", desc("w", "xyz")); !w.ValueToMetric || w.Limit.Period != 7*24*time.Hour {
		t.Errorf("w: ValueToMetric = %v, Period = %v; want true, 168h", w.ValueToMetric, w.Limit.Period)
	}
	if got, want := s.Domains(), []string{"d"}; len(got) != 1 || got[0] != want[0] {
		t.Errorf("Domains() = %v, want %v", got, want)
	}
	if got := len(s.Rules("d")); got != 3 {
		t.Errorf("len(Rules(d)) = %d, want 3", got)
	}
	if !s.HasDomain("d") || s.HasDomain("x") {
		t.Errorf("HasDomain(d), HasDomain(x) = %v, %v; want true, false", s.HasDomain("d"), s.HasDomain("x"))
	}
}

func TestZeroSet(t *testing.T) {
	var s *Set
	if _, ok := s.Match("d", desc("k", "v")); ok {
		t.Error("nil Set matched")
	}
	if _, ok := (&Set{}).Match("d", desc("k", "v")); ok {
		t.Error("zero Set matched")
	}
	if s.HasDomain("d") || s.Domains() != nil || s.Rules("d") != nil {
		t.Error("nil Set has domains")
	}
	if _, ok := s.Override("d", UnitSecond, 1); ok {
		t.Error("nil Set built an override")
	}
	if got := s.Explain("d", desc("k", "v")); !strings.Contains(got, "unknown domain") {
		t.Errorf("Explain on nil Set = %q, want it to mention the unknown domain", got)
	}
}

func TestNewSetErrors(t *testing.T) {
	tests := []struct {
		name    string
		domains []Domain
		want    []string
	}{
		{name: "empty domain", domains: []Domain{{Source: "a.yaml:1:1"}}, want: []string{"a.yaml:1:1: domain is empty"}},
		{name: "duplicate domain", domains: []Domain{{Name: "d", Source: "a.yaml:1:1"}, {Name: "d", Source: "b.yaml:1:1"}},
			want: []string{`b.yaml:1:1: duplicate domain "d" (first defined at a.yaml:1:1)`}},
		{name: "empty key", domains: []Domain{{Name: "d", Descriptors: []Node{{Source: "x:2:3"}}}},
			want: []string{"x:2:3: d: descriptor has an empty key"}},
		{name: "duplicate key value", domains: []Domain{{Name: "d", Descriptors: []Node{
			{Key: "k", Value: "v", Source: "x:2:3"}, {Key: "k", Value: "v", Source: "x:4:3"},
			{Key: "k", Source: "x:5:3"}, {Key: "k", Source: "x:6:3"},
			{Key: "k", Value: "a*", Source: "x:7:3"}, {Key: "k", Value: "a*", ShareThreshold: true, Source: "x:8:3"},
		}}}, want: []string{
			`x:4:3: d.k_v: duplicate descriptor (key "k", value "v") at this level (first defined at x:2:3)`,
			`x:6:3: d.k: duplicate descriptor (key "k", value "") at this level (first defined at x:5:3)`,
			`x:8:3: d.k_a*: duplicate descriptor (key "k", value "a*") at this level (first defined at x:7:3)`,
		}},
		{name: "share_threshold without pattern", domains: []Domain{{Name: "d", Descriptors: []Node{
			{Key: "k", Value: "v", ShareThreshold: true}, {Key: "j", ShareThreshold: true},
		}}}, want: []string{"d.k_v: share_threshold needs a value with a '*' pattern", "d.j: share_threshold needs"}},
		{name: "bad limits", domains: []Domain{{Name: "d", Descriptors: []Node{
			{Key: "a", RateLimit: &RateLimit{RequestsPerUnit: 1}},
			{Key: "b", RateLimit: &RateLimit{Unit: UnitSecond, RequestsPerUnit: -1}},
			{Key: "c", RateLimit: &RateLimit{Unit: UnitSecond, RequestsPerUnit: 1 << 32}},
			{Key: "e", RateLimit: &RateLimit{Unit: UnitSecond, RequestsPerUnit: 1, Burst: 5}},
			{Key: "f", RateLimit: &RateLimit{Unlimited: true, Unit: UnitSecond}},
			// Issue 16, finding 6: limits every store would not count as configured.
			{Key: "g", RateLimit: &RateLimit{Unit: UnitYear, RequestsPerUnit: 10, Algorithm: limiter.TokenBucket, Burst: 5000}},
			{Key: "h", RateLimit: &RateLimit{Unit: UnitMinute, RequestsPerUnit: 100, Algorithm: limiter.TokenBucket, Tiers: &Tiers{Key: "plan",
				Limits: map[string]limiter.Limit{"big": {Requests: 1000, Period: time.Minute, Burst: 1e16, Algorithm: limiter.TokenBucket}}}}},
		}}}, want: []string{
			"d.a: rate_limit unit is not one of second",
			"d.b: invalid limit: requests -1 is negative",
			"d.c: requests_per_unit 4294967296 is above 4294967295",
			"d.e: invalid limit: burst is only meaningful for token_bucket",
			"d.f: an unlimited rate_limit takes no unit",
			"d.g: burst: invalid limit: a token bucket refilling 10 per 8760h0m0s holds at most 1462 tokens",
			"d.h: tier big: burst: invalid limit: 10000000000000000 is beyond 9007199254740991",
		}},
		{name: "replaces", domains: []Domain{{Name: "d", Descriptors: []Node{
			{Key: "a", RateLimit: named("a", 1, "a")},
			{Key: "b", RateLimit: named("b", 1, "")},
			{Key: "c", RateLimit: named("c", 1, "nope")},
			{Key: "e", RateLimit: named("e", 1, "a")},
		}}, {Name: "other", Descriptors: []Node{{Key: "x", RateLimit: named("x", 1, "e")}}}},
			want: []string{
				`d.a: rule "a" replaces itself`,
				"d.b: replaces has an entry with an empty name",
				`d.c: replaces "nope", but no rate_limit of domain "d" has that name`,
				`other.x: replaces "e", but no rate_limit of domain "other" has that name`,
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewSet(tc.domains, Options{})
			if err == nil {
				t.Fatalf("NewSet = %v, nil; want an error", s)
			}
			got := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("error %q does not contain %q", got, w)
				}
			}
			if n := strings.Count(got, "\n") + 1; n != len(tc.want) {
				t.Errorf("got %d errors, want %d:\n%s", n, len(tc.want), got)
			}
		})
	}
}

func TestOverride(t *testing.T) {
	s, err := NewSet([]Domain{{Name: "d", Descriptors: []Node{{Key: "k", RateLimit: &RateLimit{Name: "n", Unit: UnitSecond, RequestsPerUnit: 1, Algorithm: limiter.SlidingWindow}, ShadowMode: true}}}},
		Options{DefaultAlgorithm: limiter.TokenBucket})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := s.Override("d", UnitHour, 1000)
	if !ok {
		t.Fatal("Override(d) not ok")
	}
	want := limiter.Limit{Requests: 1000, Period: time.Hour, Algorithm: limiter.TokenBucket}
	if r.Limit != want || !r.Override || r.Shadow || r.Name != "" || r.Unit != "hour" || r.UnitCode != UnitHour || r.Path != "d.(override)" {
		t.Errorf("Override = %+v, want limit %v, override, not shadow, no name, unit hour, path d.(override)", r, want)
	}
	if _, ok := s.Override("other", UnitHour, 1); ok {
		t.Error("Override(unknown domain) ok, want false")
	}
	if _, ok := s.Override("d", UnitUnknown, 1); ok {
		t.Error("Override(UnitUnknown) ok, want false")
	}
	d := desc("k", "v", "tenant", "t1")
	key := string(AppendKey(nil, &r, d))
	if want := "t1:do1:k1:v6:tenant2:t1"; key != want {
		t.Errorf("override key = %q, want %q", key, want)
	}
	matched, _ := s.Match("d", desc("k", "v"))
	if k2 := string(AppendKey(nil, matched, desc("k", "v"))); k2 == key {
		t.Errorf("override and rule share key %q", k2)
	}
	if allocs := testing.AllocsPerRun(100, func() { s.Override("d", UnitMinute, 5) }); allocs != 0 {
		t.Errorf("Override allocates %v times, want 0", allocs)
	}
}

func TestUnits(t *testing.T) {
	tests := []struct {
		name   string
		want   Unit
		period time.Duration
	}{
		{name: "second", want: UnitSecond, period: time.Second},
		{name: "MINUTE", want: UnitMinute, period: time.Minute},
		{name: "Hour", want: UnitHour, period: time.Hour},
		{name: "day", want: UnitDay, period: 24 * time.Hour},
		{name: "week", want: UnitWeek, period: 7 * 24 * time.Hour},
		{name: "month", want: UnitMonth, period: 30 * 24 * time.Hour},
		{name: "year", want: UnitYear, period: 365 * 24 * time.Hour},
	}
	for _, tc := range tests {
		got, ok := ParseUnit(tc.name)
		if !ok || got != tc.want || got.Period() != tc.period || got.String() != strings.ToLower(tc.name) {
			t.Errorf("ParseUnit(%q) = %v (%v, %v), %v; want %v, %v", tc.name, got, got.Period(), got.String(), ok, tc.want, tc.period)
		}
	}
	for _, bad := range []string{"", "unknown", "minutes", "ms"} {
		if u, ok := ParseUnit(bad); ok {
			t.Errorf("ParseUnit(%q) = %v, true; want false", bad, u)
		}
	}
	if UnitUnknown.Valid() || Unit(8).Valid() || Unit(8).Period() != 0 || Unit(-1).String() != "unknown" {
		t.Error("invalid units report as valid")
	}
}
