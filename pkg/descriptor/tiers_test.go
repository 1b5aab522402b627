package descriptor

import (
	"bytes"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

func perMin(n int64) limiter.Limit { return limiter.Limit{Requests: n, Period: time.Minute} }

// tieredSet builds domain "edge" with three tiered rules and returns them
// with Tiers attached as the configuration does.
func tieredSet(t *testing.T, ids *Identities) (set *Set, byPlan, byKey, byTenant *Rule) {
	t.Helper()
	set, err := NewSet([]Domain{{
		Name: "edge",
		Descriptors: []Node{
			{Key: "user", Descriptors: []Node{{Key: "plan", RateLimit: &RateLimit{Name: "per_plan", Unit: UnitMinute, RequestsPerUnit: 10}}}},
			{Key: "api_key", RateLimit: &RateLimit{Name: "per_key", Unit: UnitMinute, RequestsPerUnit: 10}},
			{Key: "tenant", RateLimit: &RateLimit{Name: "per_tenant", Unit: UnitMinute, RequestsPerUnit: 10}},
			{Key: "remote_address", RateLimit: &RateLimit{Name: "per_ip", Unit: UnitMinute, RequestsPerUnit: 2}},
		},
	}}, Options{})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	limits := map[string]limiter.Limit{"free": perMin(60), "pro": perMin(1000), "enterprise": perMin(5000)}
	units := map[string]Unit{"free": UnitMinute, "pro": UnitMinute, "enterprise": UnitMinute}
	for _, r := range set.Rules("edge") {
		switch r.Name {
		case "per_plan":
			r.Tiers, byPlan = NewTiers(r.Name, "plan", limits, units, ids), r
		case "per_key":
			r.Tiers, byKey = NewTiers(r.Name, "api_key", limits, units, ids), r
		case "per_tenant":
			r.Tiers, byTenant = NewTiers(r.Name, "tenant", limits, units, ids), r
		default:
			r.Tiers = NewTiers(r.Name, "", nil, nil, ids)
		}
	}
	return set, byPlan, byKey, byTenant
}

func TestLimitForTiers(t *testing.T) {
	ids := identitiesForTest(t)
	set, _, _, _ := tieredSet(t, ids)
	tests := []struct {
		name     string
		d        Descriptor
		want     int64
		wantTier string
	}{
		{name: "plan free", d: Descriptor{{"user", "u1"}, {"plan", "free"}}, want: 60, wantTier: "free"},
		{name: "plan pro", d: Descriptor{{"user", "u1"}, {"plan", "pro"}}, want: 1000, wantTier: "pro"},
		{name: "unknown plan gets the rule's limit", d: Descriptor{{"user", "u1"}, {"plan", "gold"}}, want: 10},
		{name: "listed key's tier", d: Descriptor{{"api_key", "acme-prod"}}, want: 1000, wantTier: "pro"},
		{name: "listed free key", d: Descriptor{{"api_key", "hobby"}}, want: 60, wantTier: "free"},
		{name: "expired key", d: Descriptor{{"api_key", "old"}}, want: 10},
		{name: "unlisted key", d: Descriptor{{"api_key", HashValue("x")}}, want: 10},
		{name: "key value naming a tier is not a tier", d: Descriptor{{"api_key", "pro"}}, want: 10},
		{name: "listed tenant's tier", d: Descriptor{{"tenant", "acme"}}, want: 5000, wantTier: "enterprise"},
		{name: "unlisted tenant named like a tier", d: Descriptor{{"tenant", "enterprise"}}, want: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := set.Match("edge", tc.d)
			if !ok {
				t.Fatalf("Match(%v): no rule", tc.d)
			}
			if got := r.LimitFor(tc.d, extractNow); got != perMin(tc.want) {
				t.Errorf("LimitFor: got %v, want %v", got, perMin(tc.want))
			}
			res := r.Resolve(tc.d, extractNow)
			if res.Tier != tc.wantTier || res.Override != nil {
				t.Errorf("Resolve: got tier %q override %v, want tier %q and no override", res.Tier, res.Override, tc.wantTier)
			}
			if res.Unit != UnitMinute {
				t.Errorf("Resolve: got unit %v, want minute", res.Unit)
			}
		})
	}
}

func TestLimitForOverrides(t *testing.T) {
	expiry := extractNow.Add(time.Hour)
	ids, err := NewIdentities(IdentitiesOptions{
		APIKeys: []APIKeyListing{
			{Digest: HashAPIKey("k1"), Identity: Identity{ID: "acme-prod", Tier: "pro", Tenant: "acme", Overrides: []LimitOverride{
				{Rule: "per_key", Limit: perMin(7777), Unit: UnitMinute, Expires: expiry},
				{Rule: "other_rule", Limit: perMin(1), Unit: UnitMinute},
			}}},
			{Digest: HashAPIKey("k2"), Identity: Identity{ID: "plain", Tier: "free"}},
		},
		Tenants: []Identity{
			{ID: "acme", Tier: "pro", Overrides: []LimitOverride{{Limit: perMin(3), Unit: UnitMinute}}},
		},
	})
	if err != nil {
		t.Fatalf("NewIdentities: %v", err)
	}
	set, _, byKey, _ := tieredSet(t, ids)
	tests := []struct {
		name   string
		d      Descriptor
		now    time.Time
		reqKey string
		reqTen string
		want   int64
		wantOf string
	}{
		{name: "key override before expiry", d: Descriptor{{"api_key", "acme-prod"}}, now: extractNow, want: 7777, wantOf: "acme-prod"},
		{name: "key override expired falls back to the tier", d: Descriptor{{"api_key", "acme-prod"}}, now: expiry, want: 1000},
		{name: "no override for plain key", d: Descriptor{{"api_key", "plain"}}, now: extractNow, want: 60},
		{name: "tenant override applies to every rule", d: Descriptor{{"tenant", "acme"}}, now: extractNow, want: 3, wantOf: "acme"},
		{name: "request tenant applies without entry", d: Descriptor{{"remote_address", "192.0.2.1"}}, now: extractNow, reqTen: "acme", want: 3, wantOf: "acme"},
		{name: "no request identity", d: Descriptor{{"remote_address", "192.0.2.1"}}, now: extractNow, want: 2},
		{name: "request key override wins over tenant", d: Descriptor{{"api_key", "acme-prod"}}, now: extractNow, reqTen: "acme", want: 7777, wantOf: "acme-prod"},
		{name: "request key's tier when descriptor lacks it", d: Descriptor{{"api_key", "plain"}}, now: extractNow, reqKey: "acme-prod", want: 60},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := set.Match("edge", tc.d)
			if !ok {
				t.Fatalf("Match(%v): no rule", tc.d)
			}
			var reqKey, reqTen *Identity
			if tc.reqKey != "" {
				reqKey, _ = ids.APIKey(tc.reqKey, tc.now)
			}
			if tc.reqTen != "" {
				reqTen, _ = ids.Tenant(tc.reqTen, tc.now)
			}
			res := r.ResolveRequest(tc.d, tc.now, reqKey, reqTen)
			if res.Limit != perMin(tc.want) || res.OverrideOf != tc.wantOf {
				t.Errorf("got %v (override of %q), want %v (override of %q)", res.Limit, res.OverrideOf, perMin(tc.want), tc.wantOf)
			}
		})
	}
	if got := byKey.LimitFor(Descriptor{{"api_key", "acme-prod"}}, extractNow); got != perMin(7777) {
		t.Errorf("LimitFor: got %v, want 7777/min", got)
	}
}

func TestNewTiersNil(t *testing.T) {
	ids := identitiesForTest(t) // no overrides
	if got := NewTiers("r", "", nil, nil, ids); got != nil {
		t.Errorf("NewTiers without tiers or overrides: got %+v, want nil", got)
	}
	if got := NewTiers("r", "", nil, nil, nil); got != nil {
		t.Errorf("NewTiers with nil identities: got %+v, want nil", got)
	}
	withOverride, err := NewIdentities(IdentitiesOptions{Tenants: []Identity{{ID: "t", Overrides: []LimitOverride{{Rule: "r", Limit: perMin(1)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if NewTiers("r", "", nil, nil, withOverride) == nil {
		t.Error("NewTiers for an overridden rule: got nil, want an extension")
	}
	if NewTiers("other", "", nil, nil, withOverride) != nil {
		t.Error("NewTiers for a rule no override names: got an extension, want nil")
	}
}

func TestLimitForAllocs(t *testing.T) {
	ids := identitiesForTest(t)
	_, byPlan, byKey, _ := tieredSet(t, ids)
	plain := &Rule{Limit: perMin(5)}
	dPlan := Descriptor{{"user", "u"}, {"plan", "pro"}}
	dKey := Descriptor{{"api_key", "acme-prod"}}
	allocs := testing.AllocsPerRun(100, func() {
		_ = plain.LimitFor(dKey, extractNow)
		_ = byPlan.LimitFor(dPlan, extractNow)
		_ = byKey.LimitFor(dKey, extractNow)
	})
	if allocs != 0 {
		t.Errorf("got %v allocations, want 0", allocs)
	}
}

// tierStore counts with the limiter's own algorithms in a map.
type tierStore map[string]*limiter.State

func (f tierStore) take(key []byte, l limiter.Limit, now time.Time) limiter.Result {
	s := f[string(key)]
	if s == nil {
		s = new(limiter.State)
		f[string(key)] = s
	}
	return l.Apply(s, now, 1)
}

func TestTenantIsolation(t *testing.T) {
	ids := identitiesForTest(t)
	set, _, _, _ := tieredSet(t, ids)
	d := Descriptor{{"remote_address", "192.0.2.1"}} // per_ip: 2/minute
	r, ok := set.Match("edge", d)
	if !ok {
		t.Fatal("no rule for remote_address")
	}
	store := tierStore{}
	take := func(tenant string) bool {
		key := AppendTenantKey(nil, tenant, r, d)
		return store.take(key, r.LimitFor(d, extractNow), extractNow).Allowed
	}
	for i := range 2 {
		if !take("acme") {
			t.Fatalf("acme request %d: refused, want allowed", i+1)
		}
	}
	if take("acme") {
		t.Fatal("acme request 3: allowed, want refused (limit 2)")
	}
	for _, tenant := range []string{"globex", ""} {
		if !take(tenant) {
			t.Errorf("tenant %q request 1 after acme's quota ran out: refused, want allowed", tenant)
		}
	}
	if got := len(store); got != 3 {
		t.Errorf("got %d counters, want 3 (acme, globex, no tenant)", got)
	}
}

func TestAppendTenantKey(t *testing.T) {
	set, _, _, _ := tieredSet(t, nil)
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

// TestLimitForKeepsAlgorithm checks that tiers and overrides change a
// rule's numbers but never its algorithm, which its counter key names.
func TestLimitForKeepsAlgorithm(t *testing.T) {
	ids, err := NewIdentities(IdentitiesOptions{Tenants: []Identity{
		{ID: "t", Overrides: []LimitOverride{{Limit: perMin(7), Unit: UnitMinute}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet([]Domain{{Name: "d", Descriptors: []Node{
		{Key: "tenant", RateLimit: &RateLimit{Unit: UnitSecond, RequestsPerUnit: 10, Algorithm: limiter.TokenBucket, Burst: 20}},
		{Key: "plan", RateLimit: &RateLimit{Unit: UnitSecond, RequestsPerUnit: 10, Algorithm: limiter.SlidingWindow,
			Tiers: &Tiers{Key: "plan", Limits: map[string]limiter.Limit{"gold": perMin(100)}, Units: map[string]Unit{"gold": UnitMinute}}}},
	}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	LinkIdentities(set, ids)
	tests := []struct {
		d    Descriptor
		want limiter.Limit
	}{
		{d: Descriptor{{"tenant", "t"}}, want: limiter.Limit{Requests: 7, Period: time.Minute, Algorithm: limiter.TokenBucket}},
		{d: Descriptor{{"tenant", "other"}}, want: limiter.Limit{Requests: 10, Period: time.Second, Burst: 20, Algorithm: limiter.TokenBucket}},
		{d: Descriptor{{"plan", "gold"}}, want: limiter.Limit{Requests: 100, Period: time.Minute, Algorithm: limiter.SlidingWindow}},
	}
	for _, tc := range tests {
		r, ok := set.Match("d", tc.d)
		if !ok {
			t.Fatalf("no rule for %v", tc.d)
		}
		if got := r.LimitFor(tc.d, extractNow); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.d, got, tc.want)
		}
	}
}
