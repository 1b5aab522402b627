package extract

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// The tests below check how rules resolve tiers and overrides with the
// listed identities (descriptor.Options.Identities): the descriptor side
// of Identities.

// desc builds a descriptor from key, value pairs.
func desc(kv ...string) descriptor.Descriptor {
	var d descriptor.Descriptor
	for i := 0; i+1 < len(kv); i += 2 {
		d = append(d, descriptor.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func perMin(n int64) limiter.Limit { return limiter.Limit{Requests: n, Period: time.Minute} }

// tieredSet builds domain "edge" with three tiered rules linked to ids, as
// the configuration does, and returns them.
func tieredSet(t *testing.T, ids *Identities) (set *descriptor.Set, byPlan, byKey, byTenant *descriptor.Rule) {
	t.Helper()
	limits := map[string]limiter.Limit{"free": perMin(60), "pro": perMin(1000), "enterprise": perMin(5000)}
	units := map[string]descriptor.Unit{"free": descriptor.UnitMinute, "pro": descriptor.UnitMinute, "enterprise": descriptor.UnitMinute}
	tiers := func(key string) *descriptor.Tiers { return &descriptor.Tiers{Key: key, Limits: limits, Units: units} }
	rl := func(name string, n int64, t *descriptor.Tiers) *descriptor.RateLimit {
		return &descriptor.RateLimit{Name: name, Unit: descriptor.UnitMinute, RequestsPerUnit: n, Tiers: t}
	}
	set, err := descriptor.NewSet([]descriptor.Domain{{
		Name: "edge",
		Descriptors: []descriptor.Node{
			{Key: "user", Descriptors: []descriptor.Node{{Key: "plan", RateLimit: rl("per_plan", 10, tiers("plan"))}}},
			{Key: "api_key", RateLimit: rl("per_key", 10, tiers("api_key"))},
			{Key: "tenant", RateLimit: rl("per_tenant", 10, tiers("tenant"))},
			{Key: "remote_address", RateLimit: rl("per_ip", 2, nil)},
		},
	}}, descriptor.Options{Identities: ids})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	for _, r := range set.Rules("edge") {
		switch r.Name {
		case "per_plan":
			byPlan = r
		case "per_key":
			byKey = r
		case "per_tenant":
			byTenant = r
		}
	}
	return set, byPlan, byKey, byTenant
}

// limitFor is the limit r enforces for d on the RateLimitService path.
func limitFor(r *descriptor.Rule, d descriptor.Descriptor, now time.Time) limiter.Limit {
	return r.ResolveRequest(d, now, nil, nil).Limit
}

func TestResolveTiers(t *testing.T) {
	ids := identitiesForTest(t)
	set, _, _, _ := tieredSet(t, ids)
	tests := []struct {
		name     string
		d        descriptor.Descriptor
		want     int64
		wantTier string
	}{
		{name: "plan free", d: desc("user", "u1", "plan", "free"), want: 60, wantTier: "free"},
		{name: "plan pro", d: desc("user", "u1", "plan", "pro"), want: 1000, wantTier: "pro"},
		{name: "unknown plan gets the rule's limit", d: desc("user", "u1", "plan", "gold"), want: 10},
		{name: "listed key's tier", d: desc("api_key", "acme-prod"), want: 1000, wantTier: "pro"},
		{name: "listed free key", d: desc("api_key", "hobby"), want: 60, wantTier: "free"},
		{name: "expired key", d: desc("api_key", "old"), want: 10},
		{name: "unlisted key", d: desc("api_key", HashValue("x")), want: 10},
		{name: "key value naming a tier is not a tier", d: desc("api_key", "pro"), want: 10},
		{name: "listed tenant's tier", d: desc("tenant", "acme"), want: 5000, wantTier: "enterprise"},
		{name: "unlisted tenant named like a tier", d: desc("tenant", "enterprise"), want: 10},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := set.Match("edge", tc.d)
			if !ok {
				t.Fatalf("Match(%v): no rule", tc.d)
			}
			res := r.ResolveRequest(tc.d, extractNow, nil, nil)
			if res.Limit != perMin(tc.want) {
				t.Errorf("limit: got %v, want %v", res.Limit, perMin(tc.want))
			}
			if res.Tier != tc.wantTier || res.Override != nil {
				t.Errorf("got tier %q override %v, want tier %q and no override", res.Tier, res.Override, tc.wantTier)
			}
			if res.Unit != descriptor.UnitMinute {
				t.Errorf("got unit %v, want minute", res.Unit)
			}
		})
	}
}

func TestResolveOverrides(t *testing.T) {
	expiry := extractNow.Add(time.Hour)
	ids, err := NewIdentities(IdentitiesOptions{
		APIKeys: []APIKeyListing{
			{Digest: HashAPIKey("k1"), Identity: Identity{ID: "acme-prod", Tier: "pro", Tenant: "acme", Overrides: []descriptor.LimitOverride{
				{Rule: "per_key", Limit: perMin(7777), Unit: descriptor.UnitMinute, Expires: expiry},
				{Rule: "other_rule", Limit: perMin(1), Unit: descriptor.UnitMinute},
			}}},
			{Digest: HashAPIKey("k2"), Identity: Identity{ID: "plain", Tier: "free"}},
		},
		Tenants: []Identity{
			{ID: "acme", Tier: "pro", Overrides: []descriptor.LimitOverride{{Limit: perMin(3), Unit: descriptor.UnitMinute}}},
		},
	})
	if err != nil {
		t.Fatalf("NewIdentities: %v", err)
	}
	set, _, byKey, _ := tieredSet(t, ids)
	tests := []struct {
		name   string
		d      descriptor.Descriptor
		now    time.Time
		reqKey string
		reqTen string
		want   int64
		wantOf string
	}{
		{name: "key override before expiry", d: desc("api_key", "acme-prod"), now: extractNow, want: 7777, wantOf: "acme-prod"},
		{name: "key override expired falls back to the tier", d: desc("api_key", "acme-prod"), now: expiry, want: 1000},
		{name: "no override for plain key", d: desc("api_key", "plain"), now: extractNow, want: 60},
		{name: "tenant override applies to every rule", d: desc("tenant", "acme"), now: extractNow, want: 3, wantOf: "acme"},
		{name: "request tenant applies without entry", d: desc("remote_address", "192.0.2.1"), now: extractNow, reqTen: "acme", want: 3, wantOf: "acme"},
		{name: "no request identity", d: desc("remote_address", "192.0.2.1"), now: extractNow, want: 2},
		{name: "request key override wins over tenant", d: desc("api_key", "acme-prod"), now: extractNow, reqTen: "acme", want: 7777, wantOf: "acme-prod"},
		{name: "request key's tier when descriptor lacks it", d: desc("api_key", "plain"), now: extractNow, reqKey: "acme-prod", want: 60},
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
			res := r.ResolveRequest(tc.d, tc.now, reqKey.Listing(), reqTen.Listing())
			if res.Limit != perMin(tc.want) || res.OverrideOf != tc.wantOf {
				t.Errorf("got %v (override of %q), want %v (override of %q)", res.Limit, res.OverrideOf, perMin(tc.want), tc.wantOf)
			}
		})
	}
	if got := limitFor(byKey, desc("api_key", "acme-prod"), extractNow); got != perMin(7777) {
		t.Errorf("got %v, want 7777/min", got)
	}
}

// TestLinkedOnlyWhenOverridden checks that NewSet gives a rule without
// tiers an extension only when an override of the identities targets it.
func TestLinkedOnlyWhenOverridden(t *testing.T) {
	_, byPlan, _, _ := tieredSet(t, identitiesForTest(t)) // no overrides
	set, _, _, _ := tieredSet(t, identitiesForTest(t))
	ip, _ := set.Match("edge", desc("remote_address", "192.0.2.1"))
	if ip.Tiers != nil || byPlan.Tiers == nil {
		t.Errorf("without overrides: per_ip Tiers %v (want nil), per_plan Tiers %v (want set)", ip.Tiers, byPlan.Tiers)
	}
	withOverride, err := NewIdentities(IdentitiesOptions{Tenants: []Identity{{ID: "t", Overrides: []descriptor.LimitOverride{{Rule: "per_ip", Limit: perMin(1)}}}}})
	if err != nil {
		t.Fatal(err)
	}
	set, _, _, _ = tieredSet(t, withOverride)
	ip, _ = set.Match("edge", desc("remote_address", "192.0.2.1"))
	if ip.Tiers == nil {
		t.Error("a rule an override names: got no Tiers, want an extension")
	}
}

func TestResolveAllocs(t *testing.T) {
	ids := identitiesForTest(t)
	_, byPlan, byKey, _ := tieredSet(t, ids)
	plain := &descriptor.Rule{Limit: perMin(5)}
	dPlan := desc("user", "u", "plan", "pro")
	dKey := desc("api_key", "acme-prod")
	allocs := testing.AllocsPerRun(100, func() {
		_ = limitFor(plain, dKey, extractNow)
		_ = limitFor(byPlan, dPlan, extractNow)
		_ = limitFor(byKey, dKey, extractNow)
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
	d := desc("remote_address", "192.0.2.1") // per_ip: 2/minute
	r, ok := set.Match("edge", d)
	if !ok {
		t.Fatal("no rule for remote_address")
	}
	store := tierStore{}
	take := func(tenant string) bool {
		key := descriptor.AppendTenantKey(nil, tenant, r, d)
		return store.take(key, limitFor(r, d, extractNow), extractNow).Allowed
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

// TestResolveKeepsAlgorithm checks that tiers and overrides change a
// rule's numbers but never its algorithm, which its counter key names.
func TestResolveKeepsAlgorithm(t *testing.T) {
	ids, err := NewIdentities(IdentitiesOptions{Tenants: []Identity{
		{ID: "t", Overrides: []descriptor.LimitOverride{{Limit: perMin(7), Unit: descriptor.UnitMinute}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := descriptor.NewSet([]descriptor.Domain{{Name: "d", Descriptors: []descriptor.Node{
		{Key: "tenant", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitSecond, RequestsPerUnit: 10, Algorithm: limiter.TokenBucket, Burst: 20}},
		{Key: "plan", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitSecond, RequestsPerUnit: 10, Algorithm: limiter.SlidingWindow,
			Tiers: &descriptor.Tiers{Key: "plan", Limits: map[string]limiter.Limit{"gold": perMin(100)}, Units: map[string]descriptor.Unit{"gold": descriptor.UnitMinute}}}},
	}}}, descriptor.Options{Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		d    descriptor.Descriptor
		want limiter.Limit
	}{
		{d: desc("tenant", "t"), want: limiter.Limit{Requests: 7, Period: time.Minute, Algorithm: limiter.TokenBucket}},
		{d: desc("tenant", "other"), want: limiter.Limit{Requests: 10, Period: time.Second, Burst: 20, Algorithm: limiter.TokenBucket}},
		{d: desc("plan", "gold"), want: limiter.Limit{Requests: 100, Period: time.Minute, Algorithm: limiter.SlidingWindow}},
	}
	for _, tc := range tests {
		r, ok := set.Match("d", tc.d)
		if !ok {
			t.Fatalf("no rule for %v", tc.d)
		}
		if got := limitFor(r, tc.d, extractNow); got != tc.want {
			t.Errorf("%v: got %v, want %v", tc.d, got, tc.want)
		}
	}
}
