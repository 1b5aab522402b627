package extract

import (
	"errors"
	"net/netip"
	"strings"
)

// Defaults and bounds of Settings.
const (
	// DefaultMaxValueBytes bounds extracted values; longer ones are
	// replaced by their hash (see HashValue).
	DefaultMaxValueBytes = 256
	// DefaultDenyStatus is the HTTP status of MissingDeny when unset.
	DefaultDenyStatus = 403
	// MaxTrustedHops bounds ClientIPOptions.TrustedHops.
	MaxTrustedHops = 32
	// minValueBytes is the smallest MaxValueBytes.
	minValueBytes = 16
	// maxForwardedWalk bounds how many X-Forwarded-For entries the trusted
	// proxy walk reads, so that a huge header costs a bounded amount.
	maxForwardedWalk = 64
	// maxAddrLen is longer than any textual IP address with port and zone.
	maxAddrLen = 64
)

// Settings say how the ext_authz Check API turns an HTTP request into the
// rate-limit descriptors of one domain, and which API keys and tenants it
// knows: the authz: section of the server file, which pkg/config maps onto
// it, apart from the upstream headers. Zero values are the documented
// defaults. ListIdentities and New check and compile them.
type Settings struct {
	// Domain is the rate-limit domain the descriptors are matched in.
	Domain string `yaml:"domain"`
	// MaxValueBytes bounds every extracted value (default 256, at least
	// 16): a longer one is replaced by HashValue of it, which keeps
	// distinct values distinct without storing kilobytes per counter.
	MaxValueBytes int `yaml:"max_value_bytes"`
	// ClientIP says how the client address is found.
	ClientIP ClientIPOptions `yaml:"client_ip"`
	// APIKey says where a request's API key comes from.
	APIKey APIKeyOptions `yaml:"api_key"`
	// Tenant says where a request's tenant comes from.
	Tenant TenantOptions `yaml:"tenant"`
	// Tier says where a request's tier comes from when its listed API key
	// or tenant has none.
	Tier TierOptions `yaml:"tier"`
	// APIKeys and Tenants are the listed identities, with their tiers and
	// limit overrides (see ListIdentities).
	APIKeys []KeyListing    `yaml:"api_keys"`
	Tenants []TenantListing `yaml:"tenants"`
	// Descriptors are the descriptors to build from each request.
	Descriptors []DescriptorSpec `yaml:"descriptors"`
}

// ClientIPOptions says how to find the client address. With neither field
// set the client is the peer. Never is the left-most X-Forwarded-For value
// trusted blindly.
type ClientIPOptions struct {
	// TrustedHops is the number of proxies (Envoy included when it appends
	// to X-Forwarded-For, i.e. use_remote_address: true) that append the
	// address they saw to X-Forwarded-For: the client is the TrustedHops-th
	// entry from the right (0 to MaxTrustedHops). A header with fewer
	// entries means the request bypassed a proxy: the client is then
	// missing.
	TrustedHops int `yaml:"trusted_hops"`
	// TrustedProxies lists the addresses or prefixes of trusted proxies
	// ("10.0.0.0/8", "192.0.2.7"): starting at the peer, walking
	// X-Forwarded-For from the right, the client is the first address not
	// in them (the left-most one when all are trusted).
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// KeySource is one place an API key may come from: a header, optionally
// with an authorization scheme ("Bearer"), or a query parameter.
type KeySource struct {
	Header string `yaml:"header"`
	Scheme string `yaml:"scheme"`
	Query  string `yaml:"query"`
}

// APIKeyOptions says where the request's API key comes from.
type APIKeyOptions struct {
	// Sources are tried in order; the first non-empty value is the key.
	Sources []KeySource `yaml:"sources"`
	// ListedOnly ignores keys that are not listed (or expired) in
	// Identities, so that an entry from them counts as missing.
	ListedOnly bool `yaml:"listed_only"`
	// DescriptorKey is the descriptor key of API key entries (default
	// DefaultAPIKeyKey), on the ext_authz and the RateLimitService path:
	// IdentitiesOptions.APIKeyKey. Values under it are canonical keys
	// (Identities.AppendKeyID): Check emits them, ShouldRateLimit turns the
	// raw key Envoy sends into one on arrival, and rule-file values load
	// as one (Identities.RuleKeyValue).
	DescriptorKey string `yaml:"descriptor_key"`
}

// TenantSource is one place a tenant may come from: a header, or the host.
// What each trusts:
//   - Header is a value the client can send, so a header source must be
//     Trusted: a proxy in front of extauthz sets the header and removes the
//     client's copy. Its tenant decides the tier, the per-tenant quota and
//     the counters' namespace. An untrusted header source is a config error.
//   - Host HostListed: the request's host selects a listed tenant (its
//     hosts), whose tier and per-tenant quota apply; since any client can
//     send any Host, it never namespaces counters.
//   - Host HostFirstLabel: the host's first label is the tenant; listed, its
//     tier applies. It never namespaces counters either.
//
// The tenant of a listed API key wins over every source and namespaces.
type TenantSource struct {
	Header string   `yaml:"header"`
	Host   HostMode `yaml:"host"`
	// Trusted marks a header source as set by a trusted proxy (required
	// for header sources, refused on host sources).
	Trusted bool `yaml:"trusted"`
}

// TenantOptions says where the request's tenant comes from. The tenant of
// a listed API key always wins over these sources.
type TenantOptions struct {
	// Sources are tried in order.
	Sources []TenantSource `yaml:"sources"`
	// ListedOnly ignores tenants that are not listed (or expired).
	ListedOnly bool `yaml:"listed_only"`
	// ShareCounters turns off per-tenant counters. By default every
	// counter key of a request whose tenant is authenticated (the tenant
	// of its listed API key, or of a trusted header) is namespaced by that
	// tenant (Extraction.Namespace, see descriptor.AppendCounterKey), so
	// that tenants never share a counter even for descriptors that do not
	// carry the tenant. A tenant from the host never namespaces: the client
	// chooses the host.
	ShareCounters bool `yaml:"share_counters"`
	// DescriptorKey is the descriptor key of tenant entries (default
	// DefaultTenantKey): IdentitiesOptions.TenantKey.
	DescriptorKey string `yaml:"descriptor_key"`
}

// TierOptions says where the request's tier comes from when neither its
// listed API key nor its listed tenant has one.
type TierOptions struct {
	// Header names the tier of requests without a listed identity. A
	// client can send any tier, so a header counts only with Trusted: set
	// it only when a proxy in front of extauthz sets this header and
	// removes the client's copy (New refuses Header without Trusted).
	Header string `yaml:"header"`
	// Trusted says Header is set by a trusted proxy (default false).
	Trusted bool `yaml:"trusted"`
}

// DescriptorSpec is one descriptor to build: its entries, in order.
type DescriptorSpec struct {
	// Name names the descriptor in explain output and deny bodies.
	Name    string      `yaml:"name"`
	Entries []EntrySpec `yaml:"entries"`
}

// EntrySpec is one entry extractor: where the value comes from, the
// descriptor key it is emitted under, and what to do when it is missing.
type EntrySpec struct {
	// From is the value's source (required).
	From Source `yaml:"from"`
	// Key is the descriptor entry key. Defaults: client_ip "remote_address"
	// ("masked_remote_address" when masked), path "path", method "method",
	// api_key and tenant the Identities keys, tier "tier", generic
	// "generic_key"; header and query require it.
	Key string `yaml:"key"`
	// Header is the header name for FromHeader (case-insensitive).
	Header string `yaml:"header"`
	// Query is the parameter name for FromQuery.
	Query string `yaml:"query"`
	// Exact, Prefix and Template restrict FromPath (at most one is set): the
	// value is then the pattern itself, so every matching path shares one
	// counter, or with Template and Capture the segment captured by
	// {Capture}. With none set the value is the path.
	Exact    string `yaml:"exact"`
	Prefix   string `yaml:"prefix"`
	Template string `yaml:"template"`
	Capture  string `yaml:"capture"`
	// Methods restricts FromMethod to these methods (upper case); others
	// count as missing. Empty allows all.
	Methods []string `yaml:"methods"`
	// V4Mask and V6Mask mask FromClientIP to a prefix length (e.g. 24, 64);
	// zero keeps the full address.
	V4Mask int `yaml:"v4_mask"`
	V6Mask int `yaml:"v6_mask"`
	// Value is the constant of FromGeneric.
	Value string `yaml:"value"`
	// Missing is the policy when the source yields nothing (default deny
	// for client_ip, whose absence means the request bypassed the trusted
	// proxies and would otherwise go unlimited per address; skip for every
	// other source); Default is the value of MissingDefault and DenyStatus
	// the HTTP status of MissingDeny (default 403).
	Missing    Missing `yaml:"missing"`
	Default    string  `yaml:"default"`
	DenyStatus int     `yaml:"deny_status"`
}

// ErrInvalidSettings is matched (errors.Is) by every error of New, and
// ErrInvalidIdentity by every error of NewIdentities.
var (
	ErrInvalidSettings = errors.New("invalid extractor settings")
	ErrInvalidIdentity = errors.New("invalid identity")
)

// problem is one problem found by New or NewIdentities: its message, and
// the sentinel it matches.
type problem struct {
	msg  string
	kind error
}

func (p *problem) Error() string        { return p.msg }
func (p *problem) Is(target error) bool { return target == p.kind }

// parsePrefix parses a prefix, or an address as a single-address prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
