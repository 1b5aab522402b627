package descriptor

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Source names where an extracted entry's value comes from.
type Source uint8

// Sources of entry values. The zero Source is invalid.
const (
	// FromClientIP is the client address: the peer, or the trusted
	// X-Forwarded-For address (see ClientIPOptions), optionally masked.
	FromClientIP Source = iota + 1
	// FromHeader is a request header's value.
	FromHeader
	// FromQuery is a query parameter's (decoded) value.
	FromQuery
	// FromPath is the path, or the exact/prefix/template it matched.
	FromPath
	// FromMethod is the HTTP method.
	FromMethod
	// FromAPIKey is the request's API key: the id of a listed key, or a
	// hash of an unlisted one. Never the key in clear.
	FromAPIKey
	// FromTenant is the request's resolved tenant.
	FromTenant
	// FromTier is the request's resolved tier.
	FromTier
	// FromGeneric is a constant value.
	FromGeneric
)

var sourceNames = [...]string{
	FromClientIP: "client_ip",
	FromHeader:   "header",
	FromQuery:    "query",
	FromPath:     "path",
	FromMethod:   "method",
	FromAPIKey:   "api_key",
	FromTenant:   "tenant",
	FromTier:     "tier",
	FromGeneric:  "generic",
}

// String returns the configuration name of s, e.g. "client_ip".
func (s Source) String() string {
	if int(s) < len(sourceNames) && sourceNames[s] != "" {
		return sourceNames[s]
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// ParseSource returns the Source named name.
func ParseSource(name string) (Source, error) {
	for i, n := range sourceNames {
		if n != "" && n == name {
			return Source(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q: choices are %s", ErrUnknownSource, name, strings.Join(sourceNames[1:], ", "))
}

// Missing is what an entry does when its source yields no value.
type Missing uint8

const (
	// MissingSkip drops the whole descriptor, like an Envoy rate_limits
	// entry whose action finds nothing. The zero value.
	MissingSkip Missing = iota
	// MissingDefault uses EntrySpec.Default as the value.
	MissingDefault
	// MissingDeny refuses the request with EntrySpec.DenyStatus.
	MissingDeny
)

var missingNames = [...]string{"skip", "default", "deny"}

// String returns the configuration name of m, e.g. "skip".
func (m Missing) String() string {
	if int(m) < len(missingNames) {
		return missingNames[m]
	}
	return fmt.Sprintf("missing(%d)", uint8(m))
}

// ParseMissing returns the Missing policy named name.
func ParseMissing(name string) (Missing, error) {
	for i, n := range missingNames {
		if n == name {
			return Missing(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q: choices are skip, default, deny", ErrUnknownMissing, name)
}

// Sentinel errors of NewExtractor and the parse functions.
var (
	ErrUnknownSource  = errors.New("unknown source")
	ErrUnknownMissing = errors.New("unknown missing policy")
	ErrInvalidSpec    = errors.New("invalid extractor")
)

// Defaults of ExtractorOptions.
const (
	// DefaultMaxValueBytes bounds extracted values; longer ones are
	// replaced by their hash (see HashValue).
	DefaultMaxValueBytes = 256
	// DefaultDenyStatus is the HTTP status of MissingDeny when unset.
	DefaultDenyStatus = 403
	// MaxTrustedHops bounds ClientIPOptions.TrustedHops.
	MaxTrustedHops = 32
	// maxForwardedWalk bounds how many X-Forwarded-For entries the trusted
	// proxy walk reads, so that a huge header costs a bounded amount.
	maxForwardedWalk = 64
	// maxAddrLen is longer than any textual IP address with port and zone.
	maxAddrLen = 64
)

// EntrySpec is one compiled entry extractor: where the value comes from,
// the descriptor key it is emitted under, and what to do when it is missing.
type EntrySpec struct {
	// From is the value's source (required).
	From Source
	// Key is the descriptor entry key. Defaults: client_ip "remote_address"
	// ("masked_remote_address" when masked), path "path", method "method",
	// api_key and tenant the Identities keys, tier "tier", generic
	// "generic_key"; header and query require it.
	Key string
	// Header is the header name for FromHeader (case-insensitive).
	Header string
	// Query is the parameter name for FromQuery.
	Query string
	// Exact, Prefix and Template restrict FromPath (at most one is set): the
	// value is then the pattern itself, so every matching path shares one
	// counter, or with Template and Capture the segment captured by
	// {Capture}. With none set the value is the path.
	Exact, Prefix, Template, Capture string
	// Methods restricts FromMethod to these methods (upper case); others
	// count as missing. Empty allows all.
	Methods []string
	// V4Mask and V6Mask mask FromClientIP to a prefix length (e.g. 24, 64);
	// zero keeps the full address.
	V4Mask, V6Mask int
	// Value is the constant of FromGeneric.
	Value string
	// Missing is the policy when the source yields nothing; Default is the
	// value of MissingDefault and DenyStatus the HTTP status of MissingDeny
	// (default 403).
	Missing    Missing
	Default    string
	DenyStatus int
}

// DescriptorSpec is one descriptor to build: its entries, in order.
type DescriptorSpec struct {
	// Name names the descriptor in explain output and deny bodies.
	Name    string
	Entries []EntrySpec
}

// ClientIPOptions says how to find the client address. With neither field
// set the client is the peer. Never is the left-most X-Forwarded-For value
// trusted blindly.
type ClientIPOptions struct {
	// TrustedHops is the number of proxies (Envoy included when it appends
	// to X-Forwarded-For, i.e. use_remote_address: true) that append the
	// address they saw to X-Forwarded-For: the client is the TrustedHops-th
	// entry from the right. A header with fewer entries means the request
	// bypassed a proxy: the client is then missing.
	TrustedHops int
	// TrustedProxies lists the prefixes of trusted proxies: starting at the
	// peer, walking X-Forwarded-For from the right, the client is the first
	// address not in them (the left-most one when all are trusted).
	TrustedProxies []netip.Prefix
}

// KeySource is one place an API key may come from: a header, optionally
// with an authorization scheme ("Bearer"), or a query parameter.
type KeySource struct {
	Header string
	Scheme string
	Query  string
}

// APIKeyOptions says where the request's API key comes from.
type APIKeyOptions struct {
	// Sources are tried in order; the first non-empty value is the key.
	Sources []KeySource
	// ListedOnly ignores keys that are not listed (or expired) in
	// Identities, so that an entry from them counts as missing.
	ListedOnly bool
}

// HostMode says how a tenant is taken from the request host.
type HostMode uint8

const (
	// HostNone does not look at the host.
	HostNone HostMode = iota
	// HostListed is the listed tenant whose hosts include the host.
	HostListed
	// HostFirstLabel is the host's first DNS label ("acme" of
	// "acme.api.example.com").
	HostFirstLabel
)

// TenantSource is one place a tenant may come from: a header, or the host.
type TenantSource struct {
	Header string
	Host   HostMode
}

// TenantOptions says where the request's tenant comes from. The tenant of
// a listed API key always wins over these sources.
type TenantOptions struct {
	Sources []TenantSource
	// ListedOnly ignores tenants that are not listed (or expired).
	ListedOnly bool
	// Namespace prefixes every counter key of a request that has a tenant
	// with that tenant (see AppendTenantKey), so that tenants never share
	// a counter even for descriptors that do not carry the tenant.
	Namespace bool
}

// TierOptions says where the request's tier comes from when neither its
// listed API key nor its listed tenant has one.
type TierOptions struct {
	// Header is trusted as is: use it only when an earlier filter sets it
	// and strips any client-sent copy.
	Header string
}

// ExtractorOptions configures an Extractor. Zero values are the documented
// defaults.
type ExtractorOptions struct {
	// Domain is the rate-limit domain the descriptors are matched in.
	Domain   string
	ClientIP ClientIPOptions
	// MaxValueBytes bounds every extracted value (default 256): a longer
	// one is replaced by HashValue of it, which keeps distinct values
	// distinct without storing kilobytes per counter.
	MaxValueBytes int
	APIKey        APIKeyOptions
	Tenant        TenantOptions
	Tier          TierOptions
	// Identities lists API keys and tenants (nil: none listed).
	Identities  *Identities
	Descriptors []DescriptorSpec
}

// Extractor turns a Request into descriptors. It is immutable and safe for
// concurrent use.
type Extractor struct {
	opts     ExtractorOptions
	ids      *Identities
	trusted  []netip.Prefix
	descs    []compiledDescriptor
	headers  []string
	needsIP  bool
	anyTier  bool
	maxValue int
}

type compiledDescriptor struct {
	name    string
	entries []compiledEntry
}

type compiledEntry struct {
	EntrySpec
	tmpl       []segment
	capture    int
	denyReason string
}

// FieldError is a problem with one setting of ExtractorOptions or
// IdentitiesOptions. Path names the setting as the authz: section of the
// server file does ("descriptors[0].entries[1].header"), so that the
// configuration can point at it. errors.Is matches ErrInvalidSpec or
// ErrInvalidIdentity.
type FieldError struct {
	Path string
	Msg  string
	kind error
}

// Error formats e as "path: message".
func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

// Is reports whether target is the sentinel e belongs to.
func (e *FieldError) Is(target error) bool { return target == e.kind }

// fieldErrors collects FieldErrors of one kind.
type fieldErrors struct {
	kind error
	errs []error
}

func (fe *fieldErrors) add(path, format string, args ...any) {
	fe.errs = append(fe.errs, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...), kind: fe.kind})
}

func (fe *fieldErrors) err() error { return errors.Join(fe.errs...) }

// NewExtractor validates opts and compiles them. It reports every problem
// at once, each a *FieldError.
func NewExtractor(opts ExtractorOptions) (*Extractor, error) {
	x := &Extractor{opts: opts, ids: opts.Identities, maxValue: opts.MaxValueBytes}
	if x.ids == nil {
		x.ids = &Identities{}
	}
	if x.maxValue == 0 {
		x.maxValue = DefaultMaxValueBytes
	}
	// Header names are looked up in lower case; copy before normalising so
	// that the caller's slices stay untouched.
	x.opts.APIKey.Sources = slices.Clone(opts.APIKey.Sources)
	for i := range x.opts.APIKey.Sources {
		x.opts.APIKey.Sources[i].Header = strings.ToLower(x.opts.APIKey.Sources[i].Header)
	}
	x.opts.Tenant.Sources = slices.Clone(opts.Tenant.Sources)
	for i := range x.opts.Tenant.Sources {
		x.opts.Tenant.Sources[i].Header = strings.ToLower(x.opts.Tenant.Sources[i].Header)
	}
	x.opts.Tier.Header = strings.ToLower(opts.Tier.Header)
	fe := &fieldErrors{kind: ErrInvalidSpec}
	if x.maxValue < 16 {
		fe.add("max_value_bytes", "%d is too small: want at least 16 (default %d)", x.maxValue, DefaultMaxValueBytes)
	}
	ip := opts.ClientIP
	switch {
	case ip.TrustedHops < 0 || ip.TrustedHops > MaxTrustedHops:
		fe.add("client_ip.trusted_hops", "%d is out of range: want 0 to %d", ip.TrustedHops, MaxTrustedHops)
	case ip.TrustedHops > 0 && len(ip.TrustedProxies) > 0:
		fe.add("client_ip", "set trusted_hops or trusted_proxies, not both")
	}
	for i, p := range ip.TrustedProxies {
		if !p.IsValid() {
			fe.add(fmt.Sprintf("client_ip.trusted_proxies[%d]", i), "invalid prefix")
			continue
		}
		x.trusted = append(x.trusted, p.Masked())
	}
	if ip.TrustedHops > 0 || len(ip.TrustedProxies) > 0 {
		x.addHeader("x-forwarded-for")
	}
	for i, s := range opts.APIKey.Sources {
		p := fmt.Sprintf("api_key.sources[%d]", i)
		switch {
		case (s.Header == "") == (s.Query == ""):
			fe.add(p, "set exactly one of header, query")
		case s.Scheme != "" && s.Header == "":
			fe.add(p+".scheme", "needs a header (e.g. header: authorization, scheme: Bearer)")
		case s.Header != "":
			x.addHeader(s.Header)
		}
	}
	for i, s := range opts.Tenant.Sources {
		p := fmt.Sprintf("tenant.sources[%d]", i)
		switch {
		case (s.Header == "") == (s.Host == HostNone):
			fe.add(p, "set exactly one of header, host")
		case s.Host > HostFirstLabel:
			fe.add(p+".host", "unknown host mode %d", s.Host)
		case s.Header != "":
			x.addHeader(s.Header)
		}
	}
	if opts.Tier.Header != "" {
		x.addHeader(opts.Tier.Header)
	}
	if len(opts.Descriptors) == 0 {
		fe.add("descriptors", "none: want at least one descriptor to extract")
	}
	for i, d := range opts.Descriptors {
		p := fmt.Sprintf("descriptors[%d]", i)
		cd := compiledDescriptor{name: d.Name}
		if cd.name == "" {
			cd.name = p
		}
		if len(d.Entries) == 0 {
			fe.add(p+".entries", "none: want at least one entry")
		}
		for j, e := range d.Entries {
			ce, ok := x.compileEntry(e, fmt.Sprintf("%s.entries[%d]", p, j), fe)
			if !ok {
				continue
			}
			ce.denyReason = fmt.Sprintf("descriptor %q: no %s for entry %q", cd.name, ce.From, ce.Key)
			cd.entries = append(cd.entries, ce)
		}
		x.descs = append(x.descs, cd)
	}
	if err := fe.err(); err != nil {
		return nil, err
	}
	return x, nil
}

func (x *Extractor) addHeader(name string) {
	name = strings.ToLower(name)
	for _, h := range x.headers {
		if h == name {
			return
		}
	}
	x.headers = append(x.headers, name)
}

// entryFields lists the optional EntrySpec fields by configuration name,
// for "not used by" errors.
var entryFields = []string{"header", "query", "exact", "prefix", "template", "capture", "methods", "v4_mask", "v6_mask", "value"}

// compileEntry checks e (at path p) and compiles it; problems go to fe.
func (x *Extractor) compileEntry(e EntrySpec, p string, fe *fieldErrors) (compiledEntry, bool) {
	ce := compiledEntry{EntrySpec: e, capture: -1}
	n := len(fe.errs)
	// only reports fields set that From does not read.
	only := func(allowed ...string) {
		set := map[string]bool{
			"header": e.Header != "", "query": e.Query != "", "exact": e.Exact != "",
			"prefix": e.Prefix != "", "template": e.Template != "", "capture": e.Capture != "",
			"methods": len(e.Methods) > 0, "v4_mask": e.V4Mask != 0, "v6_mask": e.V6Mask != 0,
			"value": e.Value != "",
		}
		for _, a := range allowed {
			delete(set, a)
		}
		for _, f := range entryFields {
			if set[f] {
				fe.add(p+"."+f, "is not used by from: %s", e.From)
			}
		}
	}
	switch e.From {
	case FromClientIP:
		only("v4_mask", "v6_mask")
		if e.V4Mask < 0 || e.V4Mask > 32 {
			fe.add(p+".v4_mask", "%d is out of range: want 1 to 32 (e.g. 24)", e.V4Mask)
		}
		if e.V6Mask < 0 || e.V6Mask > 128 {
			fe.add(p+".v6_mask", "%d is out of range: want 1 to 128 (e.g. 64)", e.V6Mask)
		}
		ce.Key = orDefault(ce.Key, "remote_address")
		if e.Key == "" && (e.V4Mask != 0 || e.V6Mask != 0) {
			ce.Key = "masked_remote_address"
		}
		x.needsIP = true
	case FromHeader:
		only("header")
		if e.Header == "" {
			fe.add(p+".header", "missing: from: header needs the header name")
		}
		ce.Header = strings.ToLower(e.Header)
		x.addHeader(ce.Header)
	case FromQuery:
		only("query")
		if e.Query == "" {
			fe.add(p+".query", "missing: from: query needs the parameter name")
		}
	case FromPath:
		only("exact", "prefix", "template", "capture")
		set := 0
		for _, f := range []struct{ name, v string }{{"exact", e.Exact}, {"prefix", e.Prefix}, {"template", e.Template}} {
			if f.v == "" {
				continue
			}
			set++
			if f.v[0] != '/' {
				fe.add(p+"."+f.name, "%q: want a path starting with /", f.v)
			}
		}
		if set > 1 {
			fe.add(p, "set at most one of exact, prefix, template")
		}
		if e.Template != "" && e.Template[0] == '/' {
			t, err := parseTemplate(e.Template)
			if err != nil {
				fe.add(p+".template", "%v", err)
			}
			ce.tmpl = t
		}
		if e.Capture != "" {
			ce.capture = templateParam(ce.tmpl, e.Capture)
			if ce.capture < 0 {
				fe.add(p+".capture", "%q is not a {param} of template %q", e.Capture, e.Template)
			}
		}
		ce.Key = orDefault(ce.Key, "path")
	case FromMethod:
		only("methods")
		for i, m := range e.Methods {
			if m == "" || strings.ToUpper(m) != m || len(m) > 32 {
				fe.add(fmt.Sprintf("%s.methods[%d]", p, i), "%q: want an upper-case method such as POST", m)
			}
		}
		ce.Key = orDefault(ce.Key, "method")
	case FromAPIKey:
		only()
		if len(x.opts.APIKey.Sources) == 0 {
			fe.add(p+".from", "api_key needs api_key.sources (where the key comes from)")
		}
		ce.Key = orDefault(ce.Key, x.ids.APIKeyKey())
	case FromTenant:
		only()
		if len(x.opts.Tenant.Sources) == 0 && !x.ids.keysHaveTenants() {
			fe.add(p+".from", "tenant needs tenant.sources, or listed API keys with a tenant")
		}
		ce.Key = orDefault(ce.Key, x.ids.TenantKey())
	case FromTier:
		only()
		ce.Key = orDefault(ce.Key, "tier")
		x.anyTier = true
	case FromGeneric:
		only("value")
		if e.Value == "" {
			fe.add(p+".value", "missing: from: generic needs a constant value")
		}
		ce.Key = orDefault(ce.Key, "generic_key")
	default:
		fe.add(p+".from", "unknown source %v", e.From)
	}
	if ce.Key == "" {
		fe.add(p+".key", "missing: from: %s needs the descriptor key to emit", e.From)
	}
	switch e.Missing {
	case MissingSkip:
	case MissingDefault:
		if e.Default == "" {
			fe.add(p+".default", "missing: missing: default needs a default value")
		}
	case MissingDeny:
		if ce.DenyStatus == 0 {
			ce.DenyStatus = DefaultDenyStatus
		}
		if ce.DenyStatus < 400 || ce.DenyStatus > 599 {
			fe.add(p+".deny_status", "%d is out of range: want an HTTP error status, 400 to 599", ce.DenyStatus)
		}
	default:
		fe.add(p+".missing", "unknown missing policy %v", e.Missing)
	}
	if e.Missing != MissingDefault && e.Default != "" {
		fe.add(p+".default", "is only used with missing: default")
	}
	if e.Missing != MissingDeny && e.DenyStatus != 0 {
		fe.add(p+".deny_status", "is only used with missing: deny")
	}
	return ce, len(fe.errs) == n
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Domain returns the domain the descriptors belong to.
func (x *Extractor) Domain() string { return x.opts.Domain }

// Options returns the options x was built from.
func (x *Extractor) Options() ExtractorOptions { return x.opts }

// Identities returns the listed API keys and tenants (never nil).
func (x *Extractor) Identities() *Identities { return x.ids }

// HeaderNames returns the lower-case names of every header x reads, so
// that a caller holding headers as a list can copy only those into
// Request.Headers. The caller must not modify the slice.
func (x *Extractor) HeaderNames() []string { return x.headers }

// Extraction is the result of Extract. Reuse one (after Reset) to avoid
// allocating: its slices keep their capacity. Its strings alias the
// Request's where possible; nothing in it aliases a reused buffer.
type Extraction struct {
	// Descriptors are the produced descriptors in configuration order;
	// Names holds the name of each.
	Descriptors []Descriptor
	Names       []string

	// APIKeyID is the listed id of the request's API key, or HashValue of
	// an unlisted one; "" when the request has none. APIKey is its listing.
	APIKeyID string
	APIKey   *Identity
	// Tenant is the request's tenant ("" for none); TenantIdentity is its
	// listing, if any.
	Tenant         string
	TenantIdentity *Identity
	// Tier is the request's tier ("" for none).
	Tier string

	// Denied is set when an entry with MissingDeny found nothing:
	// DenyStatus is its HTTP status and DenyReason names the descriptor and
	// entry (it never carries request data). Descriptors are then
	// incomplete and must not be counted.
	Denied     bool
	DenyStatus int
	DenyReason string

	entries []Entry
	ends    []int
}

// Reset empties e, keeping its capacity.
func (e *Extraction) Reset() {
	clear(e.entries)
	clear(e.Descriptors)
	*e = Extraction{
		Descriptors: e.Descriptors[:0],
		Names:       e.Names[:0],
		entries:     e.entries[:0],
		ends:        e.ends[:0],
	}
}

// Extract resets out and fills it with the descriptors r yields, the
// request's resolved API key, tenant and tier, or a denial. now decides
// whether listings have expired. Extract never fails: a source that yields
// nothing is handled by its entry's Missing policy.
func (x *Extractor) Extract(r *Request, now time.Time, out *Extraction) {
	out.Reset()
	x.resolveIdentity(r, now, out)

	var (
		client   netip.Addr
		clientOK bool
	)
	if x.needsIP {
		client, clientOK = x.ClientIP(r)
	}
	for i := range x.descs {
		d := &x.descs[i]
		start := len(out.entries)
		produced := true
		for j := range d.entries {
			ce := &d.entries[j]
			v, ok := x.value(ce, r, out, client, clientOK)
			if !ok {
				switch ce.Missing {
				case MissingDefault:
					v, ok = ce.Default, true
				case MissingDeny:
					out.entries = out.entries[:start]
					out.Denied, out.DenyStatus, out.DenyReason = true, ce.DenyStatus, ce.denyReason
					out.finish()
					return
				}
			}
			if !ok {
				produced = false
				break
			}
			out.entries = append(out.entries, Entry{Key: ce.Key, Value: v})
		}
		if !produced {
			out.entries = out.entries[:start]
			continue
		}
		out.ends = append(out.ends, len(out.entries))
		out.Names = append(out.Names, d.name)
	}
	out.finish()
}

// finish slices entries into Descriptors once entries can no longer grow.
func (e *Extraction) finish() {
	start := 0
	for _, end := range e.ends {
		e.Descriptors = append(e.Descriptors, Descriptor(e.entries[start:end:end]))
		start = end
	}
}

func (x *Extractor) value(ce *compiledEntry, r *Request, out *Extraction, client netip.Addr, clientOK bool) (string, bool) {
	switch ce.From {
	case FromClientIP:
		if !clientOK {
			return "", false
		}
		return formatAddr(client, ce.V4Mask, ce.V6Mask), true
	case FromHeader:
		v, ok := r.Header(ce.Header)
		if !ok {
			return "", false
		}
		return x.bound(v), true
	case FromQuery:
		v, ok := QueryValue(r.Query, ce.Query)
		if !ok || v == "" {
			return "", false
		}
		return x.bound(v), true
	case FromPath:
		return x.pathValue(ce, r.Path)
	case FromMethod:
		if r.Method == "" || len(r.Method) > 32 {
			return "", false
		}
		if len(ce.Methods) == 0 {
			return r.Method, true
		}
		for _, m := range ce.Methods {
			if m == r.Method {
				return m, true
			}
		}
		return "", false
	case FromAPIKey:
		return out.APIKeyID, out.APIKeyID != ""
	case FromTenant:
		// Tenant and tier names are up to 128 bytes, which may exceed a
		// small MaxValueBytes: bound them like any other value.
		return x.bound(out.Tenant), out.Tenant != ""
	case FromTier:
		return x.bound(out.Tier), out.Tier != ""
	case FromGeneric:
		return ce.Value, true
	}
	return "", false
}

func (x *Extractor) pathValue(ce *compiledEntry, path string) (string, bool) {
	switch {
	case path == "":
		return "", false
	case ce.Exact != "":
		return ce.Exact, path == ce.Exact
	case ce.Prefix != "":
		return ce.Prefix, strings.HasPrefix(path, ce.Prefix)
	case ce.tmpl != nil:
		seg, ok := matchTemplate(ce.tmpl, path, ce.capture)
		if !ok {
			return "", false
		}
		if ce.capture >= 0 {
			if seg == "" {
				return "", false
			}
			return x.bound(seg), true
		}
		return ce.Template, true
	}
	return x.bound(path), true
}

// bound returns v, or HashValue(v) when v is longer than the limit.
func (x *Extractor) bound(v string) string {
	if len(v) <= x.maxValue {
		return v
	}
	return HashValue(v)
}

// hashPrefix starts every HashValue result; identity ids and tenant names
// may not contain ':' so a hash never equals a listed name.
const hashPrefix = "sha256:"

// HashValue returns "sha256:" and the first 128 bits of the SHA-256 of v in
// hex: the form in which API keys and over-long values appear in
// descriptors, counter keys, explain output and logs.
func HashValue(v string) string {
	sum := sha256.Sum256([]byte(v))
	return hashDigest(&sum)
}

func hashDigest(sum *[32]byte) string {
	var b [len(hashPrefix) + 32]byte
	copy(b[:], hashPrefix)
	hex.Encode(b[len(hashPrefix):], sum[:16])
	return string(b[:])
}

// formatAddr formats a, masked to v4/v6 bits when they are non-zero, the
// masked form as a prefix ("192.168.1.0/24") like Envoy's
// masked_remote_address.
func formatAddr(a netip.Addr, v4, v6 int) string {
	bits := v6
	if a.Is4() {
		bits = v4
	}
	var buf [64]byte // longer than any address or prefix: one allocation
	if bits == 0 {
		return string(a.AppendTo(buf[:0]))
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return string(a.AppendTo(buf[:0]))
	}
	return string(p.AppendTo(buf[:0]))
}
