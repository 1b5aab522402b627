package descriptor

import (
	"errors"
	"strconv"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// Bounds limit what one rate-limit request may ask, so that a misbehaving
// or malicious client cannot make one RPC arbitrarily expensive (each
// descriptor is matched and may be counted; each entry is copied into a
// counter key and hashed when long). Zero values are the defaults given per
// field; a negative value also means the default. Each bound is named by its
// server file key (limits.<name>) in errors.
type Bounds struct {
	// MaxDescriptors per request (max_descriptors, default 64). Envoy
	// sends one descriptor per rate_limits entry of a route, typically a
	// handful.
	MaxDescriptors int `yaml:"max_descriptors"`
	// MaxEntries per descriptor (max_entries, default 32): one per action
	// of a rate_limits entry.
	MaxEntries int `yaml:"max_entries"`
	// MaxKeyLength bounds each entry's key, in bytes (max_key_length,
	// default 256). Keys are names chosen in Envoy's config.
	MaxKeyLength int `yaml:"max_key_length"`
	// MaxValueLength bounds each entry's value as counted, in bytes
	// (max_value_length, default 4096): enough for a long path, a user
	// agent or a JWT claim. A longer value (Envoy accepts headers up to
	// 60 KiB) is not refused, which behind Envoy's failure_mode_deny: false
	// would let the request through uncounted: the server counts it under
	// its hash (see ValueLength).
	MaxValueLength int `yaml:"max_value_length"`
	// MaxHitsAddend bounds hits_addend, request-wide and per descriptor
	// (max_hits_addend, default 1,000,000,000: the bound Envoy itself puts
	// on a route's hits_addend, so no well-formed Envoy request is refused,
	// while a corrupted or hostile value such as 2^63 is).
	MaxHitsAddend uint64 `yaml:"max_hits_addend"`
}

// Default bounds.
const (
	DefaultMaxDescriptors = 64
	DefaultMaxEntries     = 32
	DefaultMaxKeyLength   = 256
	DefaultMaxValueLength = 4096
	DefaultMaxHitsAddend  = 1_000_000_000
)

// Names of the bounds, as BoundsError.Bound and in the server file.
const (
	BoundDescriptors = "max_descriptors"
	BoundEntries     = "max_entries"
	BoundKeyLength   = "max_key_length"
	BoundHitsAddend  = "max_hits_addend"
)

// ErrOutOfBounds is matched (errors.Is) by every *BoundsError.
var ErrOutOfBounds = errors.New("request out of bounds")

// BoundsError says which bound a request exceeded and where. The gRPC edge
// answers it with InvalidArgument and its message.
type BoundsError struct {
	// Bound is the violated bound: one of the Bound* names.
	Bound string
	// Descriptor and Entry locate the offending descriptor and entry
	// (0-based); -1 when the bound is request-wide or about a whole
	// descriptor.
	Descriptor, Entry int
	// Got is the request's number (count, bytes or hits) and Max the bound.
	Got, Max uint64
}

// Error formats e, e.g. "descriptors[2].entries[0].key: 300 bytes is
// more than max_key_length 256".
func (e *BoundsError) Error() string {
	var b []byte
	if e.Descriptor >= 0 {
		b = append(b, "descriptors["...)
		b = strconv.AppendInt(b, int64(e.Descriptor), 10)
		b = append(b, ']')
		if e.Entry >= 0 {
			b = append(b, ".entries["...)
			b = strconv.AppendInt(b, int64(e.Entry), 10)
			b = append(b, ']')
		}
	}
	var what, unit string
	switch e.Bound {
	case BoundDescriptors:
		what, unit = "", " descriptors"
	case BoundEntries:
		what, unit = "", " entries"
	case BoundKeyLength:
		what, unit = ".key", " bytes"
	case BoundHitsAddend:
		what, unit = ".hits_addend", ""
		if e.Descriptor < 0 {
			what = "hits_addend"
		}
	}
	b = append(b, what...)
	if len(b) > 0 {
		b = append(b, ": "...)
	}
	b = strconv.AppendUint(b, e.Got, 10)
	b = append(b, unit...)
	b = append(b, " is more than "...)
	b = append(b, e.Bound...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, e.Max, 10)
	return string(b)
}

// Is reports whether target is ErrOutOfBounds.
func (e *BoundsError) Is(target error) bool { return target == ErrOutOfBounds }

func boundOr(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// MaxHitsAddendLimit is the largest max_hits_addend: limiter.MaxCount
// (2^53-1), the most hits every store counts exactly (the Redis store
// refuses more, which would answer every such request with an error).
const MaxHitsAddendLimit = limiter.MaxCount

// Validate checks b as configured (zero means the default): no bound is
// negative, and MaxHitsAddend is at most MaxHitsAddendLimit. Errors are
// *field.Error values at the bound's name (e.g. "max_hits_addend").
func (b Bounds) Validate() error {
	var errs []error
	for _, f := range []struct {
		name   string
		v, def int
	}{
		{BoundDescriptors, b.MaxDescriptors, DefaultMaxDescriptors},
		{BoundEntries, b.MaxEntries, DefaultMaxEntries},
		{BoundKeyLength, b.MaxKeyLength, DefaultMaxKeyLength},
		{"max_value_length", b.MaxValueLength, DefaultMaxValueLength},
	} {
		if f.v < 0 {
			errs = append(errs, field.Errorf(f.name, "%d is negative: expected 1 or more (default %d)", f.v, f.def))
		}
	}
	if b.MaxHitsAddend > MaxHitsAddendLimit {
		errs = append(errs, field.Errorf(BoundHitsAddend, "%d is too large: expected at most %d (2^53-1, the most hits every backend counts exactly)",
			b.MaxHitsAddend, uint64(MaxHitsAddendLimit)))
	}
	return errors.Join(errs...)
}

// WithDefaults returns b with every unset (zero or negative) bound replaced
// by its default.
func (b Bounds) WithDefaults() Bounds {
	b.MaxDescriptors = boundOr(b.MaxDescriptors, DefaultMaxDescriptors)
	b.MaxEntries = boundOr(b.MaxEntries, DefaultMaxEntries)
	b.MaxKeyLength = boundOr(b.MaxKeyLength, DefaultMaxKeyLength)
	b.MaxValueLength = boundOr(b.MaxValueLength, DefaultMaxValueLength)
	if b.MaxHitsAddend == 0 {
		b.MaxHitsAddend = DefaultMaxHitsAddend
	}
	return b
}

// The Check methods below let a handler validate a request while it reads
// it (straight from the proto messages, before building Descriptors): first
// CheckRequest, then CheckDescriptor for each descriptor and CheckEntry for
// each of its entries. None of them allocates unless it reports an error.

// CheckRequest checks the request-wide numbers: how many descriptors the
// request has and its hits_addend (0 when unset).
func (b *Bounds) CheckRequest(descriptors int, hitsAddend uint64) error {
	if m := boundOr(b.MaxDescriptors, DefaultMaxDescriptors); descriptors > m {
		return &BoundsError{Bound: BoundDescriptors, Descriptor: -1, Entry: -1, Got: uint64(descriptors), Max: uint64(m)}
	}
	return b.checkHits(-1, hitsAddend)
}

// CheckDescriptor checks descriptor i (0-based): how many entries it has and
// its own hits_addend (0 when unset).
func (b *Bounds) CheckDescriptor(i, entries int, hitsAddend uint64) error {
	if m := boundOr(b.MaxEntries, DefaultMaxEntries); entries > m {
		return &BoundsError{Bound: BoundEntries, Descriptor: i, Entry: -1, Got: uint64(entries), Max: uint64(m)}
	}
	return b.checkHits(i, hitsAddend)
}

// CheckEntry checks entry j of descriptor i: the length of its key (a name
// from Envoy's config, not from the client). Values are never refused: a
// value longer than ValueLength is counted under its hash.
func (b *Bounds) CheckEntry(i, j int, key string) error {
	if m := boundOr(b.MaxKeyLength, DefaultMaxKeyLength); len(key) > m {
		return &BoundsError{Bound: BoundKeyLength, Descriptor: i, Entry: j, Got: uint64(len(key)), Max: uint64(m)}
	}
	return nil
}

// ValueLength is the longest value counted as sent (MaxValueLength or its
// default); a longer one is counted under its hash.
func (b *Bounds) ValueLength() int { return boundOr(b.MaxValueLength, DefaultMaxValueLength) }

func (b *Bounds) checkHits(i int, hits uint64) error {
	m := b.MaxHitsAddend
	if m == 0 {
		m = DefaultMaxHitsAddend
	}
	if hits > m {
		return &BoundsError{Bound: BoundHitsAddend, Descriptor: i, Entry: -1, Got: hits, Max: m}
	}
	return nil
}
