// Package extract turns an HTTP request into the rate-limit descriptors
// of the ext_authz Check API and resolves its API key, tenant and tier from
// the listed identities.
package extract

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// Extractor turns a Request into descriptors. It is immutable and safe for
// concurrent use.
type Extractor struct {
	s        Settings // normalised: header names in lower case
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

// Domain returns the domain the descriptors belong to.
func (x *Extractor) Domain() string { return x.s.Domain }

// Settings returns the settings x was built from, header names in lower
// case.
func (x *Extractor) Settings() Settings { return x.s }

// Namespaced reports whether the counters of a request with an
// authenticated tenant are the tenant's own (Settings.Tenant.ShareCounters
// is false); Extraction.Namespace says, per request, by what.
func (x *Extractor) Namespaced() bool { return !x.s.Tenant.ShareCounters }

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
	Descriptors []descriptor.Descriptor
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
	// Namespace is what the request's counter keys are namespaced by (see
	// descriptor.AppendCounterKey): its tenant when that tenant is
	// authenticated (a listed API key's, or a trusted header's) and
	// tenants do not share counters; "" otherwise.
	Namespace string

	// Denied is set when an entry with MissingDeny found nothing:
	// DenyStatus is its HTTP status and DenyReason names the descriptor and
	// entry (it never carries request data). Descriptors are then
	// incomplete and must not be counted.
	Denied     bool
	DenyStatus int
	DenyReason string

	entries []descriptor.Entry
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
		if !x.appendDescriptor(&x.descs[i], r, out, client, clientOK) {
			break // denied
		}
	}
	out.finish()
}

// appendDescriptor appends the entries of d to out when every one has a
// value, and names d; it returns false when an entry with MissingDeny found
// nothing, after recording the denial in out.
func (x *Extractor) appendDescriptor(d *compiledDescriptor, r *Request, out *Extraction, client netip.Addr, clientOK bool) bool {
	start := len(out.entries)
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
				return false
			}
		}
		if !ok {
			out.entries = out.entries[:start] // skipped
			return true
		}
		out.entries = append(out.entries, descriptor.Entry{Key: ce.Key, Value: v})
	}
	out.ends = append(out.ends, len(out.entries))
	out.Names = append(out.Names, d.name)
	return true
}

// finish slices entries into Descriptors once entries can no longer grow.
func (e *Extraction) finish() {
	start := 0
	for _, end := range e.ends {
		e.Descriptors = append(e.Descriptors, descriptor.Descriptor(e.entries[start:end:end]))
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
func (x *Extractor) bound(v string) string { return BoundValue(v, x.maxValue) }

// BoundValue returns v, or HashValue(v) when v is longer than maxBytes: how
// over-long values are counted on both APIs (authz.max_value_bytes on
// Check, limits.max_value_length on ShouldRateLimit).
func BoundValue(v string, maxBytes int) string {
	if len(v) <= maxBytes {
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

// hashedLen is the length of a HashValue result.
const hashedLen = len(hashPrefix) + 32

func hashDigest(sum *[32]byte) string {
	var b [hashedLen]byte
	return string(appendHashed(b[:0], sum))
}

// appendHashed appends the HashValue form of the digest sum to dst.
func appendHashed(dst []byte, sum *[32]byte) []byte {
	dst = append(dst, hashPrefix...)
	n := len(dst)
	dst = append(dst, make([]byte, 32)...)
	hex.Encode(dst[n:], sum[:16])
	return dst
}

// isHashed reports whether v has the form of a HashValue result.
func isHashed(v string) bool {
	if len(v) != hashedLen || !strings.HasPrefix(v, hashPrefix) {
		return false
	}
	for i := len(hashPrefix); i < len(v); i++ {
		if c := v[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
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
