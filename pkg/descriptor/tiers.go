package descriptor

import (
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Tiers is a rule's extension that chooses its limit per request, shared by
// the ext_authz and RateLimitService paths (rule file: rate_limit.tier_key
// and rate_limit.tiers; server file: the overrides of authz.api_keys and
// authz.tenants). A rule without it (Rule.Tiers == nil) always enforces
// Rule.Limit.
type Tiers struct {
	// Key names the descriptor entry that selects the tier ("" for none).
	// An entry whose key is the Identities' API key or tenant key selects
	// the tier of the listed identity (never its value, which the client
	// may choose); any other entry's value is the tier name.
	Key string
	// Limits maps tier names to limits; Units holds their units. A tier
	// keeps the rule's algorithm (its counter key names it).
	Limits map[string]limiter.Limit
	Units  map[string]Unit
	// Identities resolves listed API keys and tenants, and their overrides;
	// nil for none.
	Identities *Identities
}

// NewTiers returns the extension of a rule named ruleName that tiers on key
// with limits, linked to ids: nil when nothing can change the rule's limit
// (no tiers and no override of ids targets the rule).
func NewTiers(ruleName, key string, limits map[string]limiter.Limit, units map[string]Unit, ids *Identities) *Tiers {
	if len(limits) == 0 && !ids.HasOverridesFor(ruleName) {
		return nil
	}
	return &Tiers{Key: key, Limits: limits, Units: units, Identities: ids}
}

// Resolution says which limit a rule enforces for one descriptor, and why.
type Resolution struct {
	// Limit is the limit to enforce; Unit its unit.
	Limit limiter.Limit
	Unit  Unit
	// Tier is the tier whose limit applies ("" for none).
	Tier string
	// Override is the identity override that applies (nil for none), and
	// OverrideOf the id or name of the identity that carries it.
	Override   *LimitOverride
	OverrideOf string
}

// LimitFor returns the limit rule r enforces for descriptor d (which
// matched r) at now: an active override of a listed API key, then of a
// listed tenant, carried by d; else the limit of the tier d selects; else
// r.Limit. It does not allocate.
func (r *Rule) LimitFor(d Descriptor, now time.Time) limiter.Limit {
	if r.Tiers == nil {
		return r.Limit
	}
	return r.Resolve(d, now).Limit
}

// Resolve is LimitFor with the reason, for explain, headers and bodies.
func (r *Rule) Resolve(d Descriptor, now time.Time) Resolution {
	return r.resolve(d, now, nil, nil)
}

// ResolveRequest is Resolve on the ext_authz path, where the request's own
// listed API key and tenant (Extraction.APIKey, Extraction.TenantIdentity)
// also apply to descriptors that do not carry them: their overrides, and
// their tier when the rule tiers on the API key or tenant key. Identities
// that d carries win.
func (r *Rule) ResolveRequest(d Descriptor, now time.Time, apiKey, tenant *Identity) Resolution {
	return r.resolve(d, now, apiKey, tenant)
}

func (r *Rule) resolve(d Descriptor, now time.Time, reqKey, reqTenant *Identity) Resolution {
	res := Resolution{Limit: r.Limit, Unit: r.UnitCode}
	t := r.Tiers
	if t == nil {
		return res
	}
	ids := t.Identities
	if ids == nil {
		ids = &Identities{}
	}
	apiKey, tenant := ids.entryIdentities(d, now)
	if apiKey == nil && reqKey.Active(now) {
		apiKey = reqKey
	}
	if tenant == nil && reqTenant.Active(now) {
		tenant = reqTenant
	}
	for _, id := range [2]*Identity{apiKey, tenant} {
		if id == nil {
			continue
		}
		for i := range id.Overrides {
			if o := &id.Overrides[i]; o.applies(r, now) {
				res.Limit, res.Unit, res.Override, res.OverrideOf = o.Limit, o.Unit, o, id.ID
				// The counter key names the rule's algorithm (AppendKey):
				// an override changes the numbers, never the algorithm.
				res.Limit.Algorithm, res.Limit.Burst = r.Limit.Algorithm, 0
				return res
			}
		}
	}
	if t.Key == "" || len(t.Limits) == 0 {
		return res
	}
	var tier string
	switch t.Key {
	case ids.APIKeyKey():
		tier = activeTier(apiKey, now)
	case ids.TenantKey():
		tier = activeTier(tenant, now)
	default:
		for i := range d {
			if d[i].Key == t.Key {
				tier = d[i].Value
				break
			}
		}
	}
	if l, ok := t.Limits[tier]; ok && tier != "" {
		res.Limit, res.Unit, res.Tier = l, t.Units[tier], tier
		res.Limit.Algorithm = r.Limit.Algorithm
	}
	return res
}

func activeTier(id *Identity, now time.Time) string {
	if !id.Active(now) {
		return ""
	}
	return id.Tier
}

// entryIdentities returns the active listed API key and tenant that d's
// entries carry (the first entry of each key).
func (ids *Identities) entryIdentities(d Descriptor, now time.Time) (apiKey, tenant *Identity) {
	ak, tk := ids.APIKeyKey(), ids.TenantKey()
	for i := range d {
		switch d[i].Key {
		case ak:
			if apiKey == nil {
				apiKey, _ = ids.APIKey(d[i].Value, now)
				if !apiKey.Active(now) {
					apiKey = nil
				}
			}
		case tk:
			if tenant == nil {
				tenant, _ = ids.Tenant(d[i].Value, now)
				if !tenant.Active(now) {
					tenant = nil
				}
			}
		}
	}
	return apiKey, tenant
}

// keyTenant marks a key namespaced by a tenant (AppendTenantKey). AppendKey
// starts every key with an algorithm code ('f', 'w' or 't'), so a
// namespaced key never equals an unnamespaced one.
const keyTenant = 'n'

// AppendTenantKey appends the storage key of d's counter under rule r,
// namespaced by tenant: the same descriptor of two tenants never shares a
// counter. An empty tenant appends AppendKey's key unchanged. The encoding
// stays injective: 'n', the length-prefixed tenant, then AppendKey's key.
// It does not allocate when dst has room.
func AppendTenantKey(dst []byte, tenant string, r *Rule, d Descriptor) []byte {
	if tenant != "" {
		dst = append(dst, keyTenant)
		dst = appendField(dst, tenant)
	}
	return AppendKey(dst, r, d)
}

// LinkIdentities attaches ids to the rules of s, so that LimitFor resolves
// listed API keys and tenants: rules with Tiers get ids, and rules that an
// override of ids targets (by name, or all rules) get Tiers. Call it once,
// right after NewSet and before s is shared; it is a no-op when ids is nil.
func LinkIdentities(s *Set, ids *Identities) {
	if s == nil || ids == nil {
		return
	}
	for _, domain := range s.Domains() {
		for _, r := range s.Rules(domain) {
			switch {
			case r.Tiers != nil:
				t := *r.Tiers // RateLimit.Tiers may be shared: copy before linking
				t.Identities = ids
				r.Tiers = &t
			case !r.Unlimited && ids.HasOverridesFor(r.Name):
				r.Tiers = &Tiers{Identities: ids}
			}
		}
	}
}
