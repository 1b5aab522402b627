package limiter

import (
	"math"

	"github.com/extauthz/extauthz/pkg/field"
)

// Lease is a rule's leasing settings (the rule file's rate_limit.lease, an
// extauthz extension): a replica may take a block of a hot key's remaining
// quota from a shared store in one call and admit from it locally. The
// mechanism, and the bound it keeps, are pkg/lease's; stores that do not
// lease ignore Request.Lease. The zero Lease is leasing with the defaults.
type Lease struct {
	// Fraction is the share of the key's remaining quota one block takes:
	// a block is floor(Fraction × Remaining) hits, and never less than the
	// request's own hits. It is in (0, 1]; 0 means DefaultLeaseFraction.
	Fraction float64 `yaml:"fraction"`
	// HotAfter is how many hits of a key one replica must see within one
	// Period of its limit before it leases the key; until then every
	// decision is one normal store call. 0 means DefaultLeaseHotAfter; 1
	// leases from the first hit.
	HotAfter int64 `yaml:"hot_after"`
}

// Defaults of Lease.
const (
	DefaultLeaseFraction = 0.1
	DefaultLeaseHotAfter = 16
	// MaxLeaseHotAfter bounds HotAfter (one replica's count of a key's
	// hits within a period).
	MaxLeaseHotAfter = 1 << 20
)

// Validate checks the ranges of l. Its errors are *field.Error values at
// "fraction" or "hot_after", relative to the lease block.
func (l *Lease) Validate() error {
	switch {
	case math.IsNaN(l.Fraction) || l.Fraction < 0 || l.Fraction > 1:
		return field.Errorf("fraction", "%v is out of range: expected a share of the remaining quota above 0 and at most 1 (default %v)", l.Fraction, DefaultLeaseFraction)
	case l.HotAfter < 0 || l.HotAfter > MaxLeaseHotAfter:
		return field.Errorf("hot_after", "%d is out of range: expected 1 to %d hits per period seen by one replica (default %d)", l.HotAfter, MaxLeaseHotAfter, DefaultLeaseHotAfter)
	}
	return nil
}

// EffectiveFraction is Fraction, or DefaultLeaseFraction when 0.
func (l *Lease) EffectiveFraction() float64 {
	if l.Fraction == 0 {
		return DefaultLeaseFraction
	}
	return l.Fraction
}

// EffectiveHotAfter is HotAfter, or DefaultLeaseHotAfter when 0.
func (l *Lease) EffectiveHotAfter() int64 {
	if l.HotAfter == 0 {
		return DefaultLeaseHotAfter
	}
	return l.HotAfter
}
