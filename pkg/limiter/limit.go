// Package limiter holds the rate-limit domain model: limits, the three
// algorithms (fixed window, sliding window, token bucket) as pure functions of
// their state and the current time, and the Store contract that backends
// implement.
package limiter

import (
	"errors"
	"fmt"
	"time"
)

// Algorithm selects how a Limit counts requests.
type Algorithm uint8

const (
	// FixedWindow counts hits in windows aligned to multiples of the period
	// since the Unix epoch, as envoyproxy/ratelimit does. The zero value.
	FixedWindow Algorithm = iota
	// SlidingWindow weights the previous fixed window's count by the part of
	// it still inside the sliding period (the "sliding window counter").
	SlidingWindow
	// TokenBucket is a token bucket of capacity Burst refilled at
	// Requests per Period, implemented as GCRA.
	TokenBucket
)

var algorithmNames = [...]string{"fixed_window", "sliding_window", "token_bucket"}

// String returns the configuration name of a, e.g. "fixed_window".
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// ParseAlgorithm returns the Algorithm named s ("fixed_window",
// "sliding_window" or "token_bucket").
func ParseAlgorithm(s string) (Algorithm, error) {
	for i, n := range algorithmNames {
		if n == s {
			return Algorithm(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q: choices are fixed_window, sliding_window, token_bucket", ErrUnknownAlgorithm, s)
}

// Sentinel errors.
var (
	ErrUnknownAlgorithm = errors.New("unknown algorithm")
	ErrInvalidLimit     = errors.New("invalid limit")
)

// Limit is one configured limit: Requests per Period, counted by Algorithm.
// The zero Algorithm is FixedWindow. Burst is the token bucket capacity; zero
// means Requests. Requests == 0 is valid and refuses every hit.
type Limit struct {
	Requests  int64
	Period    time.Duration
	Burst     int64
	Algorithm Algorithm
}

// Validate reports whether l can be used for counting.
func (l Limit) Validate() error {
	switch {
	case l.Requests < 0:
		return fmt.Errorf("%w: requests %d is negative", ErrInvalidLimit, l.Requests)
	case l.Period <= 0:
		return fmt.Errorf("%w: period %v is not positive", ErrInvalidLimit, l.Period)
	case l.Burst < 0:
		return fmt.Errorf("%w: burst %d is negative", ErrInvalidLimit, l.Burst)
	case l.Burst != 0 && l.Algorithm != TokenBucket:
		return fmt.Errorf("%w: burst is only meaningful for token_bucket, not %s", ErrInvalidLimit, l.Algorithm)
	case l.Algorithm > TokenBucket:
		return fmt.Errorf("%w: %s", ErrUnknownAlgorithm, l.Algorithm)
	}
	return nil
}

// Capacity is the most hits Limit admits at once: Burst for a token bucket
// that sets it, Requests otherwise.
func (l Limit) Capacity() int64 {
	if l.Algorithm == TokenBucket && l.Burst > 0 {
		return l.Burst
	}
	return l.Requests
}

// String formats l as "100/1m0s fixed_window".
func (l Limit) String() string {
	s := fmt.Sprintf("%d/%v %s", l.Requests, l.Period, l.Algorithm)
	if l.Burst > 0 {
		s += fmt.Sprintf(" burst=%d", l.Burst)
	}
	return s
}
