package extract

import (
	"errors"
	"fmt"
	"strings"
)

// Source names where an extracted entry's value comes from. It reads and
// writes its configuration name as text ("client_ip"); an unknown name
// leaves an invalid Source that New rejects.
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

	// sourceUnknown is what UnmarshalText leaves for an unknown name.
	sourceUnknown Source = 0xff
)

// sourceNames are the configuration names of the sources, by value.
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

// sourceChoices lists the source names for messages.
var sourceChoices = "one of " + strings.Join(sourceNames[1:], ", ")

// Missing is what an entry does when its source yields no value. It reads
// and writes its configuration name as text ("skip"); an unknown name
// leaves an invalid Missing that New rejects.
type Missing uint8

const (
	// MissingUnset, the zero value, is the source's default policy:
	// MissingDeny for FromClientIP (no client address means the request
	// did not come through the expected proxies, and skipping would leave
	// it unlimited per address), MissingSkip for every other source.
	MissingUnset Missing = iota
	// MissingSkip drops the whole descriptor, like an Envoy rate_limits
	// entry whose action finds nothing.
	MissingSkip
	// MissingDefault uses EntrySpec.Default as the value.
	MissingDefault
	// MissingDeny refuses the request with EntrySpec.DenyStatus.
	MissingDeny

	missingUnknown Missing = 0xff
)

var missingNames = [...]string{MissingSkip: "skip", MissingDefault: "default", MissingDeny: "deny"}

// HostMode says how a tenant is taken from the request host. It reads and
// writes its configuration name as text ("listed"; "" for HostNone); an
// unknown name leaves an invalid HostMode that New rejects.
type HostMode uint8

const (
	// HostNone does not look at the host.
	HostNone HostMode = iota
	// HostListed is the listed tenant whose hosts include the host.
	HostListed
	// HostFirstLabel is the host's first DNS label ("acme" of
	// "acme.api.example.com").
	HostFirstLabel

	hostUnknown HostMode = 0xff
)

var hostNames = [...]string{HostNone: "", HostListed: "listed", HostFirstLabel: "first_label"}

// Sentinel errors of UnmarshalText, wrapped by its errors.
var (
	ErrUnknownSource   = errors.New("unknown source")
	ErrUnknownMissing  = errors.New("unknown policy")
	ErrUnknownHostMode = errors.New("unknown host mode")
)

// String returns the configuration name of s, e.g. "client_ip".
func (s Source) String() string { return nameOf(sourceNames[:], int(s), "source") }

// MarshalText returns the configuration name of s; the zero Source (none
// set) marshals as empty.
func (s Source) MarshalText() ([]byte, error) {
	if s == 0 {
		return nil, nil
	}
	return marshalName(sourceNames[:], int(s), "source")
}

// UnmarshalText sets s to the source named text; "" leaves the zero
// Source, which New reports as missing.
func (s *Source) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*s = 0
		return nil
	}
	i, err := unmarshalName(sourceNames[:], text, ErrUnknownSource, sourceChoices)
	*s = Source(i)
	if err != nil {
		*s = sourceUnknown
	}
	return err
}

// String returns the configuration name of m, e.g. "skip" ("unset" for
// MissingUnset).
func (m Missing) String() string {
	if m == MissingUnset {
		return "unset"
	}
	return nameOf(missingNames[:], int(m), "missing")
}

// MarshalText returns the configuration name of m; MissingUnset marshals as
// empty, so that the effective configuration leaves it out as the
// configuration does.
func (m Missing) MarshalText() ([]byte, error) {
	if m == MissingUnset {
		return nil, nil
	}
	return marshalName(missingNames[:], int(m), "missing")
}

// UnmarshalText sets m to the policy named text ("" is MissingUnset).
func (m *Missing) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*m = MissingUnset
		return nil
	}
	i, err := unmarshalName(missingNames[:], text, ErrUnknownMissing, orList(missingNames[:]))
	*m = Missing(i)
	if err != nil {
		*m = missingUnknown
	}
	return err
}

// String returns the configuration name of h, e.g. "listed".
func (h HostMode) String() string { return nameOf(hostNames[:], int(h), "host") }

// MarshalText returns the configuration name of h ("" for HostNone).
func (h HostMode) MarshalText() ([]byte, error) {
	if h == HostNone {
		return nil, nil
	}
	return marshalName(hostNames[:], int(h), "host")
}

// UnmarshalText sets h to the host mode named text ("" is HostNone).
func (h *HostMode) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*h = HostNone
		return nil
	}
	i, err := unmarshalName(hostNames[:], text, ErrUnknownHostMode, orList(hostNames[1:]))
	*h = HostMode(i)
	if err != nil {
		*h = hostUnknown
	}
	return err
}

func nameOf(names []string, i int, kind string) string {
	if i < len(names) && names[i] != "" {
		return names[i]
	}
	return fmt.Sprintf("%s(%d)", kind, i)
}

func marshalName(names []string, i int, kind string) ([]byte, error) {
	if i < len(names) && names[i] != "" {
		return []byte(names[i]), nil
	}
	return nil, fmt.Errorf("unknown %s %d", kind, i)
}

// unmarshalName returns the index of text in names, or an error wrapping
// sentinel that names the choices.
func unmarshalName(names []string, text []byte, sentinel error, choices string) (int, error) {
	for i, n := range names {
		if n != "" && n == string(text) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w %q: expected %s", sentinel, text, choices)
}

// orList formats names as "a, b or c", leaving out empty names.
func orList(names []string) string {
	var ns []string
	for _, n := range names {
		if n != "" {
			ns = append(ns, n)
		}
	}
	if len(ns) < 2 {
		return strings.Join(ns, "")
	}
	return strings.Join(ns[:len(ns)-1], ", ") + " or " + ns[len(ns)-1]
}
