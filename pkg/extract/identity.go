package extract

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// Default descriptor keys of identity entries.
const (
	DefaultAPIKeyKey = "api_key"
	DefaultTenantKey = "tenant"
)

// maxNameLen bounds tenant and tier names taken from headers or hosts.
const maxNameLen = 128

// Identity is a listed API key or tenant.
type Identity struct {
	// ID is the API key's id or the tenant's name: what descriptors,
	// counters, explain and upstream headers show instead of the key.
	ID string
	// Tier is the identity's tier ("" for none).
	Tier string
	// Tenant is the tenant an API key belongs to ("" for none); it wins
	// over every tenant source of the request.
	Tenant string
	// Hosts are the hosts a tenant serves (lower case, no port).
	Hosts []string
	// Expires ends the listing (zero: never). An expired API key is treated
	// as unlisted; an expired tenant likewise.
	Expires time.Time
	// Overrides replace rule limits for descriptors carrying this identity,
	// first match wins.
	Overrides []descriptor.LimitOverride

	// listing is what rules read of the identity, set by NewIdentities.
	listing descriptor.Listing
}

// Active reports whether id is non-nil and not expired at now.
func (id *Identity) Active(now time.Time) bool {
	return id != nil && (id.Expires.IsZero() || now.Before(id.Expires))
}

// Listing returns what rules read of id, an identity of Identities (see
// descriptor.Identities), for Rule.ResolveRequest; nil when id is nil. The
// caller must not modify it.
func (id *Identity) Listing() *descriptor.Listing {
	if id == nil {
		return nil
	}
	return &id.listing
}

// APIKeyListing lists one API key by the SHA-256 of the key (HashAPIKey).
type APIKeyListing struct {
	Digest [sha256.Size]byte
	Identity
}

// IdentitiesOptions configures NewIdentities.
type IdentitiesOptions struct {
	// APIKeyKey and TenantKey are the descriptor keys whose values are API
	// key ids and tenant names (defaults "api_key" and "tenant"): tiers and
	// overrides resolve entries with these keys, on the ext_authz path and
	// on the RateLimitService path alike.
	APIKeyKey string
	TenantKey string
	APIKeys   []APIKeyListing
	Tenants   []Identity
}

// Identities is the immutable list of API keys and tenants. The zero value
// lists nothing. It is safe for concurrent use. It is the
// descriptor.Identities that rules resolve tiers and overrides with (see
// descriptor.Options).
type Identities struct {
	apiKeyKey, tenantKey string
	byDigest             map[[sha256.Size]byte]*Identity
	keys                 map[string]*Identity
	tenants              map[string]*Identity
	hosts                map[string]*Identity
	// overrideRules holds the rule names overrides target ("" for all).
	overrideRules map[string]bool
}

var _ descriptor.Identities = (*Identities)(nil)

// NewIdentities validates and indexes opts: ids and names are non-empty,
// unique, and made of letters, digits, '.', '_' and '-'; digests and hosts
// are unique; override limits are valid. It reports every problem at once,
// each a *field.Error (matching ErrInvalidIdentity) whose path indexes
// api_keys and tenants in the order given, as the authz: section does.
func NewIdentities(opts IdentitiesOptions) (*Identities, error) {
	ids := &Identities{
		apiKeyKey:     orDefault(opts.APIKeyKey, DefaultAPIKeyKey),
		tenantKey:     orDefault(opts.TenantKey, DefaultTenantKey),
		byDigest:      make(map[[sha256.Size]byte]*Identity, len(opts.APIKeys)),
		keys:          make(map[string]*Identity, len(opts.APIKeys)),
		tenants:       make(map[string]*Identity, len(opts.Tenants)),
		hosts:         make(map[string]*Identity),
		overrideRules: make(map[string]bool),
	}
	ps := &problems{kind: ErrInvalidIdentity}
	if ids.apiKeyKey == ids.tenantKey {
		ps.add("tenant.descriptor_key", "%q is also api_key.descriptor_key: API keys and tenants need different descriptor keys", ids.tenantKey)
	}
	for i := range opts.APIKeys {
		ids.listKey(&opts.APIKeys[i], fmt.Sprintf("api_keys[%d]", i), ps)
	}
	for i := range opts.Tenants {
		ids.listTenant(&opts.Tenants[i], fmt.Sprintf("tenants[%d]", i), ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return ids, nil
}

const nameRule = "want 1 to 128 letters, digits, '.', '_' or '-'"

// check checks what API keys and tenants share of id, at path p whose id
// is named idField, and notes the rules its overrides target; it returns
// false when the id is invalid.
func (ids *Identities) check(id *Identity, p, idField string, ps *problems) bool {
	ok := true
	if !validName(id.ID) {
		ps.add(p+"."+idField, "%q: %s", id.ID, nameRule)
		ok = false
	}
	if id.Tier != "" && !validName(id.Tier) {
		ps.add(p+".tier", "%q: %s", id.Tier, nameRule)
	}
	for i := range id.Overrides {
		o := &id.Overrides[i]
		op := fmt.Sprintf("%s.overrides[%d]", p, i)
		if err := o.Limit.Validate(); err != nil {
			ps.add(op, "%v", err)
		}
		if o.Limit.Burst != 0 {
			ps.add(op, "an override has no burst: it keeps the rule's algorithm and capacity rules")
		}
		ids.overrideRules[o.Rule] = true
	}
	return ok
}

// listKey checks and indexes the API key k, at path p.
func (ids *Identities) listKey(k *APIKeyListing, p string, ps *problems) {
	id := cloneIdentity(&k.Identity)
	if !ids.check(id, p, "id", ps) {
		return
	}
	if id.Tenant != "" && !validName(id.Tenant) {
		ps.add(p+".tenant", "%q: %s", id.Tenant, nameRule)
	}
	if len(id.Hosts) > 0 {
		ps.add(p, "hosts are for tenants, not API keys")
	}
	if _, dup := ids.keys[id.ID]; dup {
		ps.add(p+".id", "%q is listed twice", id.ID)
		return
	}
	if prev, dup := ids.byDigest[k.Digest]; dup {
		ps.add(p, "the same key as %q", prev.ID)
		return
	}
	ids.keys[id.ID] = id
	ids.byDigest[k.Digest] = id
}

// listTenant checks and indexes the tenant t and its hosts, at path p.
func (ids *Identities) listTenant(t *Identity, p string, ps *problems) {
	id := cloneIdentity(t)
	if !ids.check(id, p, "name", ps) {
		return
	}
	if id.Tenant != "" {
		ps.add(p, "a tenant has no tenant")
	}
	if _, dup := ids.tenants[id.ID]; dup {
		ps.add(p+".name", "%q is listed twice", id.ID)
		return
	}
	ids.tenants[id.ID] = id
	for j, h := range id.Hosts {
		hp := fmt.Sprintf("%s.hosts[%d]", p, j)
		h = strings.ToLower(h)
		if h == "" || strings.ContainsAny(h, ":/ []") {
			ps.add(hp, "%q: want a host name without port, e.g. api.example.com", h)
			continue
		}
		if prev, dup := ids.hosts[h]; dup {
			ps.add(hp, "%q is already a host of tenant %q", h, prev.ID)
			continue
		}
		ids.hosts[h] = id
	}
}

func cloneIdentity(id *Identity) *Identity {
	c := *id
	c.Hosts = append([]string(nil), id.Hosts...)
	c.Overrides = append([]descriptor.LimitOverride(nil), id.Overrides...)
	c.listing = descriptor.Listing{ID: c.ID, Tier: c.Tier, Expires: c.Expires, Overrides: c.Overrides}
	return &c
}

// HashAPIKey returns the digest under which an API key is listed.
func HashAPIKey(key string) [sha256.Size]byte { return digest(key) }

// digest is the SHA-256 of s, hashed from a stack copy when s is short, so
// that the request path does not allocate for it.
func digest(s string) [sha256.Size]byte {
	var buf [256]byte
	if len(s) <= len(buf) {
		return sha256.Sum256(buf[:copy(buf[:], s)])
	}
	return sha256.Sum256([]byte(s))
}

// MaxKeyIDLen bounds what AppendKeyID appends: a listed id (maxNameLen)
// or the sha256:<hex> form.
const MaxKeyIDLen = maxNameLen

// AppendKeyID appends to dst the canonical form of the API key key, the
// only form in which a key shows on either API (descriptors, counter keys,
// tiers, metric labels, logs, explain output, errors): the id of the
// listed key whose digest is the key's, when it is active at now; else
// HashValue(key). The key is matched by digest only, never by id: a listed
// id sent as a key is an unlisted key. It does not allocate beyond dst's
// growth. A nil *Identities lists nothing.
func (ids *Identities) AppendKeyID(dst []byte, key string, now time.Time) []byte {
	sum := digest(key)
	if ids != nil {
		if k := ids.byDigest[sum]; k.Active(now) {
			return append(dst, k.ID...)
		}
	}
	return appendHashed(dst, &sum)
}

// RuleKeyValue returns the canonical form of v, a rule-file value under
// the API key descriptor key, which requests' canonical keys (AppendKeyID)
// are matched against: a key listed here becomes its id (even once
// expired: its requests are then unlisted and no longer match it), any
// other literal becomes HashValue(v). Values already canonical stay: a
// listed id, a HashValue form ("sha256:" and 32 lower-case hex digits),
// and a pattern with '*', which then matches canonical forms. So a rule
// file never holds a key that /config, metric labels or errors could show,
// and /config's output loads back the same.
func (ids *Identities) RuleKeyValue(v string) string {
	switch {
	case v == "" || strings.Contains(v, "*") || isHashed(v):
		return v
	case ids != nil && ids.keys[v] != nil:
		return v
	}
	sum := digest(v)
	if ids != nil {
		if k := ids.byDigest[sum]; k != nil {
			return k.ID
		}
	}
	return hashDigest(&sum)
}

// A nil *Identities acts as the zero value: nothing listed, the default
// descriptor keys.

// APIKeyKey returns the descriptor key of API key entries.
func (ids *Identities) APIKeyKey() string {
	if ids == nil {
		return DefaultAPIKeyKey
	}
	return orDefault(ids.apiKeyKey, DefaultAPIKeyKey)
}

// TenantKey returns the descriptor key of tenant entries.
func (ids *Identities) TenantKey() string {
	if ids == nil {
		return DefaultTenantKey
	}
	return orDefault(ids.tenantKey, DefaultTenantKey)
}

// APIKey returns the listed API key with id, if it is active at now.
func (ids *Identities) APIKey(id string, now time.Time) (*Identity, bool) {
	if ids == nil {
		return nil, false
	}
	k := ids.keys[id]
	return k, k.Active(now)
}

// Tenant returns the listed tenant name, if it is active at now.
func (ids *Identities) Tenant(name string, now time.Time) (*Identity, bool) {
	if ids == nil {
		return nil, false
	}
	t := ids.tenants[name]
	return t, t.Active(now)
}

// ListedKey implements descriptor.Identities: the listing of the API key
// with id, when it is active at now.
func (ids *Identities) ListedKey(id string, now time.Time) *descriptor.Listing {
	if k, ok := ids.APIKey(id, now); ok {
		return k.Listing()
	}
	return nil
}

// ListedTenant implements descriptor.Identities: the listing of the tenant
// name, when it is active at now.
func (ids *Identities) ListedTenant(name string, now time.Time) *descriptor.Listing {
	if t, ok := ids.Tenant(name, now); ok {
		return t.Listing()
	}
	return nil
}

// HasOverridesFor reports whether a listed identity overrides the limit of
// rules named name (or of every rule).
func (ids *Identities) HasOverridesFor(name string) bool {
	return ids != nil && (ids.overrideRules[""] || (name != "" && ids.overrideRules[name]))
}

func (ids *Identities) keysHaveTenants() bool {
	for _, k := range ids.keys {
		if k.Tenant != "" {
			return true
		}
	}
	return false
}

// resolveIdentity fills out's API key, tenant and tier.
func (x *Extractor) resolveIdentity(r *Request, now time.Time, out *Extraction) {
	ids := x.ids
	for i := range x.s.APIKey.Sources {
		v := apiKeyFrom(&x.s.APIKey.Sources[i], r)
		if v == "" {
			continue
		}
		sum := digest(v)
		if k := ids.byDigest[sum]; k.Active(now) {
			out.APIKey, out.APIKeyID = k, k.ID
			break
		}
		if !x.s.APIKey.ListedOnly {
			out.APIKeyID = hashDigest(&sum)
			break
		}
	}
	authenticated := true // the tenant of a listed key or of a trusted header
	if k := out.APIKey; k != nil && k.Tenant != "" {
		out.Tenant = k.Tenant
		out.TenantIdentity, _ = ids.Tenant(k.Tenant, now)
	} else {
		authenticated = x.resolveTenant(r, now, out)
	}
	if authenticated && !x.s.Tenant.ShareCounters {
		out.Namespace = out.Tenant
	}
	if t := out.TenantIdentity; t != nil && !t.Active(now) {
		out.TenantIdentity = nil
	}
	switch {
	case out.APIKey != nil && out.APIKey.Tier != "":
		out.Tier = out.APIKey.Tier
	case out.TenantIdentity != nil && out.TenantIdentity.Tier != "":
		out.Tier = out.TenantIdentity.Tier
	case x.s.Tier.Header != "":
		if v, ok := r.Header(x.s.Tier.Header); ok && validName(v) {
			out.Tier = v
		}
	}
}

// resolveTenant fills out's tenant from the first tenant source that has
// one. It reports whether that tenant is authenticated: from a header
// source, which New accepts only when trusted. A host is the client's to
// choose: its tenant (listed or not) is not.
func (x *Extractor) resolveTenant(r *Request, now time.Time, out *Extraction) bool {
	for i := range x.s.Tenant.Sources {
		s := &x.s.Tenant.Sources[i]
		var name string
		var listed *Identity
		switch s.Host {
		case HostNone:
			v, ok := r.Header(s.Header)
			if !ok || !validName(v) {
				continue
			}
			name = v
			listed, _ = x.ids.Tenant(name, now)
		case HostListed:
			t := x.ids.hosts[asciiLower(hostOnly(r.Host))]
			if !t.Active(now) {
				continue
			}
			name, listed = t.ID, t
		case HostFirstLabel:
			label, _, _ := strings.Cut(hostOnly(r.Host), ".")
			label = asciiLower(label)
			if !validName(label) {
				continue
			}
			name = label
			listed, _ = x.ids.Tenant(name, now)
		}
		if !listed.Active(now) {
			listed = nil
			if x.s.Tenant.ListedOnly {
				continue
			}
		}
		out.Tenant, out.TenantIdentity = name, listed
		return s.Host == HostNone && s.Trusted
	}
	return false
}

// apiKeyFrom returns the key s finds in r, or "".
func apiKeyFrom(s *KeySource, r *Request) string {
	if s.Query != "" {
		v, _ := QueryValue(r.Query, s.Query)
		return v
	}
	v, ok := r.Header(s.Header)
	if !ok {
		return ""
	}
	if s.Scheme != "" {
		scheme, rest, ok := strings.Cut(strings.TrimLeft(v, " \t"), " ")
		if !ok || !strings.EqualFold(scheme, s.Scheme) {
			return ""
		}
		v = rest
	}
	return strings.Trim(v, " \t")
}

// hostOnly strips the port of a host ("a.example:8080", "[::1]:80").
func hostOnly(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return h[1:i]
		}
		return h
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h, ':') == i {
		return h[:i]
	}
	return h
}

// asciiLower lower-cases s, allocating only when s has upper-case letters.
func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// ValidName reports whether s can be an API key id, tenant or tier name: 1
// to 128 letters, digits, '.', '_' or '-'. Names never contain ':', so they
// never look like HashValue output.
func ValidName(s string) bool { return validName(s) }

func validName(s string) bool {
	if s == "" || len(s) > maxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
