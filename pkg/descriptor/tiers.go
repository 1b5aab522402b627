package descriptor

import (
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Tiers is a rule's extension that chooses its limit per request, shared by
// the ext_authz and RateLimitService paths (rule file: rate_limit.tier_key
// and rate_limit.tiers; server file: the overrides of authz.api_keys and
// authz.tenants). A rule without it (Rule.Tiers == nil) always enforces
// Rule.Limit. NewSet links it to Options.Identities; it is immutable after.
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

	// ids resolves listed API keys and tenants, and their overrides; nil
	// for none (Options.Identities).
	ids Identities
}

// Identities finds the listed API keys and tenants that descriptor entries
// name, whose tiers and overrides choose a rule's limit. NewSet reads it
// through Options; extract.Identities implements it. Its methods are called
// concurrently on the request path: they must be safe for concurrent use
// and should not allocate.
type Identities interface {
	// APIKeyKey and TenantKey are the descriptor keys whose values are API
	// key ids and tenant names.
	APIKeyKey() string
	TenantKey() string
	// ListedKey returns the listing of the API key with id, and
	// ListedTenant that of the tenant name; nil when it is not listed or
	// not active at now. The caller must not modify the listing.
	ListedKey(id string, now time.Time) *Listing
	ListedTenant(name string, now time.Time) *Listing
	// HasOverridesFor reports whether a listing overrides the limit of
	// rules named rule (or of every rule).
	HasOverridesFor(rule string) bool
	// AppendKeyID appends to dst the canonical form of the API key key at
	// now: the id of the listed key with key's digest, else a hash of the
	// key. Entries under APIKeyKey hold it on both APIs (the
	// RateLimitService handler canonicalises them at ingress), so that a
	// key is matched by digest only and never shows in clear.
	AppendKeyID(dst []byte, key string, now time.Time) []byte
}

// Listing is what a rule's limit depends on of a listed API key or tenant.
type Listing struct {
	// ID is the API key's id or the tenant's name.
	ID string
	// Tier is the identity's tier ("" for none).
	Tier string
	// Expires ends the listing (zero: never).
	Expires time.Time
	// Overrides replace rule limits, first match wins.
	Overrides []LimitOverride
}

// active reports whether l is not nil and listed at now.
func (l *Listing) active(now time.Time) bool {
	return l != nil && (l.Expires.IsZero() || now.Before(l.Expires))
}

// tier returns l's tier, "" when l is nil.
func (l *Listing) tier() string {
	if l == nil {
		return ""
	}
	return l.Tier
}

// LimitOverride replaces the limit of a rule for one identity.
type LimitOverride struct {
	// Rule is the rate_limit name of the rule it replaces; "" replaces the
	// limit of every rule matching a descriptor that carries the identity.
	Rule string
	// Limit replaces the rule's requests and period; the rule's algorithm
	// stays (its counter key names it) and Burst must be zero.
	Limit limiter.Limit
	// Unit is the configured unit of Limit (for headers and explain).
	Unit Unit
	// Expires ends the override (zero: never).
	Expires time.Time
}

// applies reports whether o replaces rule r's limit at now.
func (o *LimitOverride) applies(r *Rule, now time.Time) bool {
	return (o.Rule == "" || o.Rule == r.Name) && (o.Expires.IsZero() || now.Before(o.Expires))
}

// linkTiers returns the extension of rule r, whose rate_limit is rl, linked
// to ids: rl's tiers, or an extension without tiers when an override of ids
// targets r; nil when nothing can change r's limit.
func linkTiers(r *Rule, rl *RateLimit, ids Identities) *Tiers {
	switch {
	case rl.Tiers != nil:
		t := *rl.Tiers // RateLimit.Tiers may be shared: copy before linking
		t.ids = ids
		return &t
	case !r.Unlimited && ids != nil && ids.HasOverridesFor(r.Name):
		return &Tiers{ids: ids}
	}
	return nil
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

// ResolveRequest returns the limit rule r enforces for descriptor d (which
// matched r) at now, and why: an active override of a listed API key, then
// of a listed tenant; else the limit of the tier d selects; else r.Limit.
// The identities are those d's entries name (see Identities) or, when d
// carries none, the request's own apiKey and tenant (on the ext_authz
// path; nil on the RateLimitService path): their overrides, and
// their tier when the rule tiers on the API key or tenant key. It does not
// allocate.
func (r *Rule) ResolveRequest(d Descriptor, now time.Time, apiKey, tenant *Listing) Resolution {
	res := Resolution{Limit: r.Limit, Unit: r.UnitCode}
	t := r.Tiers
	if t == nil {
		return res
	}
	key, ten := t.entryListings(d, now)
	if key == nil && apiKey.active(now) {
		key = apiKey
	}
	if ten == nil && tenant.active(now) {
		ten = tenant
	}
	for _, l := range [2]*Listing{key, ten} {
		if l == nil {
			continue
		}
		for i := range l.Overrides {
			if o := &l.Overrides[i]; o.applies(r, now) {
				res.Limit, res.Unit, res.Override, res.OverrideOf = o.Limit, o.Unit, o, l.ID
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
	if tier := t.tier(d, key, ten); tier != "" {
		if l, ok := t.Limits[tier]; ok {
			res.Limit, res.Unit, res.Tier = l, t.Units[tier], tier
			res.Limit.Algorithm = r.Limit.Algorithm
		}
	}
	return res
}

// tier returns the tier name that d selects: the listed API key's or
// tenant's when Key is their descriptor key, else the value of d's entry
// with Key.
func (t *Tiers) tier(d Descriptor, key, ten *Listing) string {
	if t.ids != nil {
		switch t.Key {
		case t.ids.APIKeyKey():
			return key.tier()
		case t.ids.TenantKey():
			return ten.tier()
		}
	}
	for i := range d {
		if d[i].Key == t.Key {
			return d[i].Value
		}
	}
	return ""
}

// entryListings returns the active listed API key and tenant that d's
// entries carry (the first active one of each key).
func (t *Tiers) entryListings(d Descriptor, now time.Time) (key, ten *Listing) {
	if t.ids == nil {
		return key, ten
	}
	ak, tk := t.ids.APIKeyKey(), t.ids.TenantKey()
	for i := range d {
		switch d[i].Key {
		case ak:
			if key == nil {
				key = t.ids.ListedKey(d[i].Value, now)
			}
		case tk:
			if ten == nil {
				ten = t.ids.ListedTenant(d[i].Value, now)
			}
		}
	}
	return key, ten
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

// CheckRequestsPerUnit returns the requests_per_unit n of a tier or an
// override, or why it is not one: absent (nil), negative, or above
// MaxRequestsPerUnit.
func CheckRequestsPerUnit(n *int64) (int64, error) {
	switch {
	case n == nil:
		return 0, errors.New("missing: set how many requests each unit admits (0 refuses every request)")
	case *n < 0:
		return 0, fmt.Errorf("%d is negative: expected 0 or more", *n)
	case *n > MaxRequestsPerUnit:
		return 0, fmt.Errorf("%d is too large: expected at most %d", *n, int64(MaxRequestsPerUnit))
	}
	return *n, nil
}
