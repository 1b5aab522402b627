package descriptor

import (
	"bytes"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// fakeIdentities lists listings by id or name; extract.Identities is the
// real implementation (tested with rules in package extract).
type fakeIdentities struct {
	keys, tenants map[string]Listing
}

func (f fakeIdentities) APIKeyKey() string { return "api_key" }
func (f fakeIdentities) TenantKey() string { return "tenant" }
func (f fakeIdentities) ListedKey(id string, now time.Time) *Listing {
	if l, ok := f.keys[id]; ok && l.active(now) {
		return &l
	}
	return nil
}
func (f fakeIdentities) ListedTenant(name string, now time.Time) *Listing {
	if l, ok := f.tenants[name]; ok && l.active(now) {
		return &l
	}
	return nil
}
func (f fakeIdentities) AppendKeyID(dst []byte, key string, _ time.Time) []byte {
	return append(dst, "id-of-"+key...)
}
func (f fakeIdentities) HasOverridesFor(rule string) bool {
	for _, m := range []map[string]Listing{f.keys, f.tenants} {
		for _, l := range m {
			for _, o := range l.Overrides {
				if o.Rule == "" || o.Rule == rule {
					return true
				}
			}
		}
	}
	return false
}

var tierNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// TestLinkTiers checks which rules NewSet gives an extension: those with
// tiers, and those an override of Options.Identities targets.
func TestLinkTiers(t *testing.T) {
	perMin := limiter.Limit{Requests: 1, Period: time.Minute}
	tiers := &Tiers{Key: "plan", Limits: map[string]limiter.Limit{"gold": {Requests: 100, Period: time.Minute}}, Units: map[string]Unit{"gold": UnitMinute}}
	domains := []Domain{{Name: "d", Descriptors: []Node{
		{Key: "a", RateLimit: &RateLimit{Name: "r", Unit: UnitMinute, RequestsPerUnit: 5}},
		{Key: "b", RateLimit: &RateLimit{Name: "other", Unit: UnitMinute, RequestsPerUnit: 5}},
		{Key: "plan", RateLimit: &RateLimit{Name: "tiered", Unit: UnitMinute, RequestsPerUnit: 5, Tiers: tiers}},
		{Key: "c", RateLimit: &RateLimit{Name: "r", Unlimited: true}},
	}}}
	withOverride := fakeIdentities{tenants: map[string]Listing{"t": {ID: "t", Overrides: []LimitOverride{{Rule: "r", Limit: perMin}}}}}
	for _, tc := range []struct {
		name string
		ids  Identities
		want map[string]bool // descriptor key: has Tiers
	}{
		{name: "no identities", ids: nil, want: map[string]bool{"a": false, "b": false, "plan": true, "c": false}},
		{name: "identities without overrides", ids: fakeIdentities{}, want: map[string]bool{"a": false, "b": false, "plan": true, "c": false}},
		{name: "override of rule r", ids: withOverride, want: map[string]bool{"a": true, "b": false, "plan": true, "c": false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set, err := NewSet(domains, Options{Identities: tc.ids})
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range tc.want {
				d := Descriptor{{key, "v"}}
				r, ok := set.Match("d", d)
				if !ok {
					t.Fatalf("no rule for %v", d)
				}
				if got := r.Tiers != nil; got != want {
					t.Errorf("rule for %s: has Tiers %v, want %v", key, got, want)
				}
			}
			r, _ := set.Match("d", Descriptor{{"a", "v"}})
			tenant := withOverride.tenants["t"]
			res := r.ResolveRequest(Descriptor{{"a", "v"}}, tierNow, nil, &tenant)
			if wantOverride := tc.want["a"]; (res.Override != nil) != wantOverride {
				t.Errorf("request tenant's override: got %+v, want applied %v", res.Override, wantOverride)
			}
		})
	}
	if tiers.ids != nil {
		t.Error("NewSet linked the caller's RateLimit.Tiers in place; want a copy")
	}
}

// TestResolveWithoutIdentities checks that without Identities no entry key
// names an identity: a tier_key entry's value is the tier.
func TestResolveWithoutIdentities(t *testing.T) {
	set, err := NewSet([]Domain{{Name: "d", Descriptors: []Node{
		{Key: "api_key", RateLimit: &RateLimit{Unit: UnitSecond, RequestsPerUnit: 10,
			Tiers: &Tiers{Key: "api_key", Limits: map[string]limiter.Limit{"gold": {Requests: 100, Period: time.Minute}}, Units: map[string]Unit{"gold": UnitMinute}}}},
	}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := Descriptor{{"api_key", "gold"}}
	r, _ := set.Match("d", d)
	if res := r.ResolveRequest(d, tierNow, nil, nil); res.Tier != "gold" || res.Limit.Requests != 100 {
		t.Errorf("got %+v, want tier gold, 100 requests", res)
	}
}

func TestAppendTenantKey(t *testing.T) {
	set, err := NewSet([]Domain{{Name: "edge", Descriptors: []Node{
		{Key: "remote_address", RateLimit: &RateLimit{Name: "per_ip", Unit: UnitMinute, RequestsPerUnit: 2}},
	}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := Descriptor{{"remote_address", "192.0.2.1"}}
	r, _ := set.Match("edge", d)
	plain := AppendKey(nil, r, d)
	if got := AppendTenantKey(nil, "", r, d); !bytes.Equal(got, plain) {
		t.Errorf("empty tenant: got %q, want AppendKey's %q", got, plain)
	}
	if got := AppendTenantKey(nil, "acme", r, d); bytes.Equal(got, plain) || !bytes.HasSuffix(got, plain) {
		t.Errorf("tenant acme: got %q, want a distinct key ending in %q", got, plain)
	}
	buf := make([]byte, 0, 256)
	if allocs := testing.AllocsPerRun(100, func() { buf = AppendTenantKey(buf[:0], "acme", r, d) }); allocs != 0 {
		t.Errorf("got %v allocations, want 0", allocs)
	}
}

// FuzzAppendTenantKey checks that tenant namespacing stays injective:
// different (tenant, value) pairs never share a key.
func FuzzAppendTenantKey(f *testing.F) {
	f.Add("a", "1n1:b", "a1", "n1:b")
	f.Add("", "x", "x", "")
	set, err := NewSet([]Domain{{Name: "edge", Descriptors: []Node{{Key: "k", RateLimit: &RateLimit{Unit: UnitMinute, RequestsPerUnit: 1}}}}}, Options{})
	if err != nil {
		f.Fatal(err)
	}
	r, _ := set.Match("edge", Descriptor{{"k", "v"}})
	f.Fuzz(func(t *testing.T, t1, v1, t2, v2 string) {
		k1 := AppendTenantKey(nil, t1, r, Descriptor{{"k", v1}})
		k2 := AppendTenantKey(nil, t2, r, Descriptor{{"k", v2}})
		if bytes.Equal(k1, k2) && (t1 != t2 || v1 != v2) && len(t1) <= MaxRawField && len(v1) <= MaxRawField && len(t2) <= MaxRawField && len(v2) <= MaxRawField {
			t.Errorf("(%q, %q) and (%q, %q) share key %q", t1, v1, t2, v2, k1)
		}
	})
}

func TestCheckRequestsPerUnit(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		in   *int64
		want int64
		err  string
	}{
		{in: n(0), want: 0},
		{in: n(MaxRequestsPerUnit), want: MaxRequestsPerUnit},
		{in: nil, err: "missing: set how many requests each unit admits (0 refuses every request)"},
		{in: n(-1), err: "-1 is negative: expected 0 or more"},
		{in: n(MaxRequestsPerUnit + 1), err: "4294967296 is too large: expected at most 4294967295"},
	} {
		got, err := CheckRequestsPerUnit(tc.in)
		switch {
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%v: got %d, %v, want %d", tc.in, got, err, tc.want)
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("%v: got error %v, want %q", tc.in, err, tc.err)
		}
	}
}
