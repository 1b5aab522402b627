package extract

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/pkg/field"
)

// problems collects the *field.Error values of New or NewIdentities, each
// matching kind.
type problems struct {
	kind error
	errs []error
}

func (ps *problems) add(path, format string, args ...any) {
	ps.errs = append(ps.errs, &field.Error{Path: path, Err: &problem{msg: fmt.Sprintf(format, args...), kind: ps.kind}})
}

func (ps *problems) err() error { return errors.Join(ps.errs...) }

// New checks s and compiles it into an Extractor that resolves API keys and
// tenants with ids (nil: none listed; IdentitiesOptions.APIKeyKey and
// TenantKey must be s's descriptor keys). It reports every problem at
// once, each a *field.Error whose path is relative to s
// ("descriptors[0].entries[1].header") and which matches
// ErrInvalidSettings. An empty Domain is left to the caller.
func New(s Settings, ids *Identities) (*Extractor, error) {
	if ids == nil {
		ids = &Identities{apiKeyKey: s.APIKey.DescriptorKey, tenantKey: s.Tenant.DescriptorKey}
	}
	x := &Extractor{s: s, ids: ids, maxValue: s.MaxValueBytes}
	if x.maxValue == 0 {
		x.maxValue = DefaultMaxValueBytes
	}
	ps := &problems{kind: ErrInvalidSettings}
	if k := orDefault(s.APIKey.DescriptorKey, DefaultAPIKeyKey); k != ids.APIKeyKey() {
		ps.add("api_key.descriptor_key", "%q is not the identities' API key descriptor key %q", k, ids.APIKeyKey())
	}
	if k := orDefault(s.Tenant.DescriptorKey, DefaultTenantKey); k != ids.TenantKey() {
		ps.add("tenant.descriptor_key", "%q is not the identities' tenant descriptor key %q", k, ids.TenantKey())
	}
	if x.maxValue < minValueBytes {
		ps.add("max_value_bytes", "%d is too small: want at least %d (default %d)", x.maxValue, minValueBytes, DefaultMaxValueBytes)
	}
	x.compileClientIP(ps)
	x.compileSources(ps)
	if len(s.Descriptors) == 0 {
		ps.add("descriptors", "none: want at least one descriptor to extract")
	}
	for i, d := range s.Descriptors {
		x.compileDescriptor(d, fmt.Sprintf("descriptors[%d]", i), ps)
	}
	if err := ps.err(); err != nil {
		return nil, err
	}
	return x, nil
}

// compileClientIP checks the client_ip settings.
func (x *Extractor) compileClientIP(ps *problems) {
	ip := x.s.ClientIP
	switch {
	case ip.TrustedHops < 0 || ip.TrustedHops > MaxTrustedHops:
		ps.add("client_ip.trusted_hops", "%d is out of range: want 0 to %d", ip.TrustedHops, MaxTrustedHops)
	case ip.TrustedHops > 0 && len(ip.TrustedProxies) > 0:
		ps.add("client_ip", "set trusted_hops or trusted_proxies, not both")
	}
	for i, s := range ip.TrustedProxies {
		p, err := parsePrefix(s)
		if err != nil {
			ps.add(fmt.Sprintf("client_ip.trusted_proxies[%d]", i), "%q is not an address or prefix: expected e.g. 10.0.0.0/8 or 192.0.2.7", s)
			continue
		}
		x.trusted = append(x.trusted, p.Masked())
	}
	if ip.TrustedHops > 0 || len(ip.TrustedProxies) > 0 {
		x.addHeader("x-forwarded-for")
	}
}

// compileSources checks the API key, tenant and tier sources. Header
// names are looked up in lower case: the slices are copied before they are
// normalised, so that the caller's stay untouched.
func (x *Extractor) compileSources(ps *problems) {
	x.s.APIKey.Sources = slices.Clone(x.s.APIKey.Sources)
	for i := range x.s.APIKey.Sources {
		s := &x.s.APIKey.Sources[i]
		p := fmt.Sprintf("api_key.sources[%d]", i)
		s.Header = strings.ToLower(s.Header)
		switch {
		case (s.Header == "") == (s.Query == ""):
			ps.add(p, "set exactly one of header, query")
		case s.Scheme != "" && s.Header == "":
			ps.add(p+".scheme", "needs a header (e.g. header: authorization, scheme: Bearer)")
		case s.Header != "":
			x.addHeader(s.Header)
		}
	}
	x.s.Tenant.Sources = slices.Clone(x.s.Tenant.Sources)
	for i := range x.s.Tenant.Sources {
		s := &x.s.Tenant.Sources[i]
		p := fmt.Sprintf("tenant.sources[%d]", i)
		s.Header = strings.ToLower(s.Header)
		switch {
		case (s.Header == "") == (s.Host == HostNone):
			ps.add(p, "set exactly one of header, host")
		case s.Host > HostFirstLabel:
			ps.add(p+".host", "unknown host mode %d", s.Host)
		case s.Host != HostNone && s.Trusted:
			ps.add(p+".trusted", "only a header source is trusted or not: remove trusted (host: %s tenants never namespace counters)", s.Host)
		case s.Header != "" && !s.Trusted:
			ps.add(p+".header", "a client can send any %s: set trusted: true only if a proxy in front of extauthz sets this header and removes the client's, or remove this source", s.Header)
		case s.Header != "":
			x.addHeader(s.Header)
		}
	}
	x.s.Tier.Header = strings.ToLower(x.s.Tier.Header)
	switch t := x.s.Tier; {
	case t.Header != "" && !t.Trusted:
		ps.add("tier.header", "a client can send any %s: set trusted: true only if a proxy in front of extauthz sets this header and removes the client's, or remove tier.header", t.Header)
	case t.Header == "" && t.Trusted:
		ps.add("tier.trusted", "trusted applies to tier.header: set the header or remove trusted")
	case t.Header != "":
		x.addHeader(t.Header)
	}
}

// compileDescriptor checks and compiles d, at path p.
func (x *Extractor) compileDescriptor(d DescriptorSpec, p string, ps *problems) {
	cd := compiledDescriptor{name: d.Name}
	if cd.name == "" {
		cd.name = p
	}
	if len(d.Entries) == 0 {
		ps.add(p+".entries", "none: want at least one entry")
	}
	for j, e := range d.Entries {
		ce, ok := x.compileEntry(e, fmt.Sprintf("%s.entries[%d]", p, j), ps)
		if !ok {
			continue
		}
		ce.denyReason = fmt.Sprintf("descriptor %q: no %s for entry %q", cd.name, ce.From, ce.Key)
		cd.entries = append(cd.entries, ce)
	}
	x.descs = append(x.descs, cd)
}

func (x *Extractor) addHeader(name string) {
	name = strings.ToLower(name)
	if !slices.Contains(x.headers, name) {
		x.headers = append(x.headers, name)
	}
}

// entryFields lists the optional EntrySpec fields by configuration name,
// for "not used by" errors.
var entryFields = []string{"header", "query", "exact", "prefix", "template", "capture", "methods", "v4_mask", "v6_mask", "value"}

// compileEntry checks e (at path p) and compiles it; problems go to ps.
func (x *Extractor) compileEntry(e EntrySpec, p string, ps *problems) (compiledEntry, bool) {
	ce := compiledEntry{EntrySpec: e, capture: -1}
	n := len(ps.errs)
	if x.compileSource(&ce, p, ps) && ce.Key == "" {
		ps.add(p+".key", "missing: from: %s needs the descriptor key to emit", e.From)
	}
	if ce.Missing == MissingUnset {
		ce.Missing = MissingSkip
		if e.From == FromClientIP {
			ce.Missing = MissingDeny
		}
	}
	switch ce.Missing {
	case MissingSkip:
	case MissingDefault:
		if e.Default == "" {
			ps.add(p+".default", "missing: missing: default needs a default value")
		}
	case MissingDeny:
		if ce.DenyStatus == 0 {
			ce.DenyStatus = DefaultDenyStatus
		}
		if ce.DenyStatus < 400 || ce.DenyStatus > 599 {
			ps.add(p+".deny_status", "%d is out of range: want an HTTP error status, 400 to 599", ce.DenyStatus)
		}
	default:
		ps.add(p+".missing", "unknown missing policy %v", e.Missing)
	}
	if ce.Missing != MissingDefault && e.Default != "" {
		ps.add(p+".default", "is only used with missing: default")
	}
	if ce.Missing != MissingDeny && e.DenyStatus != 0 {
		ps.add(p+".deny_status", "is only used with missing: deny")
	}
	return ce, len(ps.errs) == n
}

// onlyFields reports the fields set in e that its source does not read.
func onlyFields(e *EntrySpec, p string, ps *problems, allowed ...string) {
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
			ps.add(p+"."+f, "is not used by from: %s", e.From)
		}
	}
}

// compileSource checks the source fields of ce (at path p) and fills in its
// default key; it returns false when the source itself is missing or
// unknown, so that nothing else about it can be checked.
func (x *Extractor) compileSource(ce *compiledEntry, p string, ps *problems) bool {
	e := &ce.EntrySpec
	switch e.From {
	case FromClientIP:
		onlyFields(e, p, ps, "v4_mask", "v6_mask")
		if e.V4Mask < 0 || e.V4Mask > 32 {
			ps.add(p+".v4_mask", "%d is out of range: want 1 to 32 (e.g. 24)", e.V4Mask)
		}
		if e.V6Mask < 0 || e.V6Mask > 128 {
			ps.add(p+".v6_mask", "%d is out of range: want 1 to 128 (e.g. 64)", e.V6Mask)
		}
		switch {
		case e.Key != "":
		case e.V4Mask != 0 || e.V6Mask != 0:
			e.Key = "masked_remote_address"
		default:
			e.Key = "remote_address"
		}
		x.needsIP = true
	case FromHeader:
		onlyFields(e, p, ps, "header")
		if e.Header == "" {
			ps.add(p+".header", "missing: from: header needs the header name")
		}
		e.Header = strings.ToLower(e.Header)
		x.addHeader(e.Header)
	case FromQuery:
		onlyFields(e, p, ps, "query")
		if e.Query == "" {
			ps.add(p+".query", "missing: from: query needs the parameter name")
		}
	case FromPath:
		onlyFields(e, p, ps, "exact", "prefix", "template", "capture")
		compilePath(ce, p, ps)
		e.Key = orDefault(e.Key, "path")
	case FromMethod:
		onlyFields(e, p, ps, "methods")
		for i, m := range e.Methods {
			if m == "" || strings.ToUpper(m) != m || len(m) > 32 {
				ps.add(fmt.Sprintf("%s.methods[%d]", p, i), "%q: want an upper-case method such as POST", m)
			}
		}
		e.Key = orDefault(e.Key, "method")
	default:
		return x.compileOtherSource(e, p, ps)
	}
	return true
}

// compileOtherSource is compileSource for the identity, tier and generic
// sources, and for a missing or unknown one.
func (x *Extractor) compileOtherSource(e *EntrySpec, p string, ps *problems) bool {
	switch e.From {
	case FromAPIKey:
		onlyFields(e, p, ps)
		if len(x.s.APIKey.Sources) == 0 {
			ps.add(p+".from", "api_key needs api_key.sources (where the key comes from)")
		}
		e.Key = orDefault(e.Key, x.ids.APIKeyKey())
	case FromTenant:
		onlyFields(e, p, ps)
		if len(x.s.Tenant.Sources) == 0 && !x.ids.keysHaveTenants() {
			ps.add(p+".from", "tenant needs tenant.sources, or listed API keys with a tenant")
		}
		e.Key = orDefault(e.Key, x.ids.TenantKey())
	case FromTier:
		onlyFields(e, p, ps)
		e.Key = orDefault(e.Key, "tier")
		x.anyTier = true
	case FromGeneric:
		onlyFields(e, p, ps, "value")
		if e.Value == "" {
			ps.add(p+".value", "missing: from: generic needs a constant value")
		}
		e.Key = orDefault(e.Key, "generic_key")
	case 0:
		ps.add(p+".from", "missing: expected %s", sourceChoices)
		return false
	default:
		ps.add(p+".from", "unknown source %v", e.From)
		return false
	}
	return true
}

// compilePath checks the pattern fields of a FromPath entry.
func compilePath(ce *compiledEntry, p string, ps *problems) {
	e := &ce.EntrySpec
	set := 0
	for _, f := range []struct{ name, v string }{{"exact", e.Exact}, {"prefix", e.Prefix}, {"template", e.Template}} {
		if f.v == "" {
			continue
		}
		set++
		if f.v[0] != '/' {
			ps.add(p+"."+f.name, "%q: want a path starting with /", f.v)
		}
	}
	if set > 1 {
		ps.add(p, "set at most one of exact, prefix, template")
	}
	if e.Template != "" && e.Template[0] == '/' {
		t, err := parseTemplate(e.Template)
		if err != nil {
			ps.add(p+".template", "%v", err)
		}
		ce.tmpl = t
	}
	if e.Capture != "" {
		ce.capture = templateParam(ce.tmpl, e.Capture)
		if ce.capture < 0 {
			ps.add(p+".capture", "%q is not a {param} of template %q", e.Capture, e.Template)
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
