// Package limiter holds the rate-limit domain model: limits, the three
// algorithms (fixed window, sliding window, token bucket) as pure functions of
// their state and the current time, and the Store contract that backends
// implement.
package limiter

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/extauthz/extauthz/pkg/field"
)

// Algorithm selects how a Limit counts requests.
type Algorithm uint8

const (
	// FixedWindow counts hits in windows [w*P, (w+1)*P) aligned to the Unix
	// epoch (a one-minute window starts at second :00), as
	// envoyproxy/ratelimit does. The zero value.
	//
	// The window index is w = floor(now_unix_ns/P), and the count starts
	// from zero when w changes. A request is admitted iff count+hits <= R.
	// Refused hits ARE counted, exactly as in envoyproxy/ratelimit (which
	// increments before it compares), so a rule file gives the same
	// decisions there and here; a client that keeps retrying therefore keeps
	// the counter above R until the window ends. Remaining = max(0, R-count);
	// ResetAfter is the time to the end of the window, and RetryAfter equals
	// it when refused. Within one window at most R hits are admitted; around
	// a boundary up to 2R can be admitted within a span of length P (R at the
	// end of one window, R at the start of the next).
	FixedWindow Algorithm = iota

	// SlidingWindow is the sliding window counter: it keeps the admitted hits
	// of the current epoch-aligned window (curr) and of the previous one
	// (prev), and estimates the hits of the last P as if prev's had been
	// spread evenly over the previous window:
	//
	//	estimate = prev*(P-elapsed)/P + curr,  elapsed = now - w*P
	//
	// A request is admitted iff estimate+hits <= R, compared exactly (in
	// integers: ceil(prev*(P-elapsed)/P) + curr + hits <= R). Admitted hits
	// are added to curr; refused hits are NOT counted. Remaining =
	// max(0, floor(R - estimate)). ResetAfter is the time until the estimate
	// is zero: the end of the next window if curr > 0, else the end of this
	// window if prev > 0, else 0. RetryAfter, when refused, is exact under
	// the linear decay: the earliest instant at which the same hits fit if
	// nothing else is counted meanwhile, possibly in the next window (when
	// hits > R, which never fits, the time to the end of this window).
	//
	// Accuracy: within any epoch-aligned window at most R hits are admitted,
	// as with FixedWindow. For a span of length P that straddles a boundary
	// the estimate assumes the previous window's hits were evenly spread: it
	// is exact when they were, stricter when they came early, looser when
	// they came late. In the worst case (R hits at the very end of one
	// window, more spread up to the end of the next) such a span holds close
	// to 2R admitted hits, but R hits just before a boundary can never be
	// followed by R more just after it. The state is two counts and a window
	// index.
	SlidingWindow

	// TokenBucket is a token bucket of capacity B = Burst (Requests when
	// Burst is 0) that gains a token every emission interval T = P/R,
	// implemented as GCRA with one stored theoretical arrival time (TAT).
	//
	// T is rounded UP to whole nanoseconds, T = ceil(P/R), and the tolerance
	// is B*T: a full burst of B is always admitted, and the long-run rate is
	// at most R per P (slower by under 1 ns per hit). With base =
	// max(TAT, now) and newTAT = base + hits*T, a request is admitted iff
	// newTAT - now <= B*T, and then TAT = newTAT; refused hits are NOT
	// counted. Over any span of length d at most B + d/T hits are admitted.
	// Remaining = floor((B*T - (TAT-now))/T), clamped to [0, B]; ResetAfter
	// = max(0, TAT-now), when the bucket is full again; RetryAfter, when
	// refused, is newTAT - now - B*T (also when hits > B, which never fits).
	// R == 0 refuses with ResetAfter = RetryAfter = P.
	//
	// The tolerance is capped at MaxTolerance, 2^62 ns (about 146 years): a
	// bucket whose B*T is longer (e.g. 10/year with burst 5000) admits a
	// burst of floor(2^62/T) rather than B, the same in every store, and its
	// TAT, and so its state's expiry, stays within 146 years of now.
	// ValidateConfig refuses such a limit, so a configured bucket is never
	// capped; the cap keeps any other caller's bucket limiting.
	TokenBucket
)

// MaxClockStepBack is how far back the clock may step without resetting a
// window. A stored fixed or sliding window that starts after now, by at most
// this much, is not stale: the clock stepped back (an NTP step, another
// instance's clock), and the algorithms take now as max(now, the stored
// window's start), so the window keeps its counts and ResetAfter and
// RetryAfter are measured from that start. A stored window further ahead is
// not from a clock step but from a changed Period (the index of a shorter
// period), and reads as stale as before. The token bucket needs no such rule:
// a TAT after now already counts in full (base = max(TAT, now)), so a clock
// stepped back only makes it stricter, by the step.
const MaxClockStepBack = time.Hour

var algorithmNames = [...]string{"fixed_window", "sliding_window", "token_bucket"}

// String returns the configuration name of a, e.g. "fixed_window".
func (a Algorithm) String() string {
	if int(a) < len(algorithmNames) {
		return algorithmNames[a]
	}
	return fmt.Sprintf("algorithm(%d)", uint8(a))
}

// MarshalText returns the configuration name of a; an unknown a is an error.
func (a Algorithm) MarshalText() ([]byte, error) {
	if int(a) < len(algorithmNames) {
		return []byte(algorithmNames[a]), nil
	}
	return nil, fmt.Errorf("%w: %s", ErrUnknownAlgorithm, a)
}

// UnmarshalText sets a to the Algorithm named text; the error wraps
// ErrUnknownAlgorithm and lists the names.
func (a *Algorithm) UnmarshalText(text []byte) error {
	i, err := parseName(algorithmNames[:], string(text))
	if err != nil {
		return fmt.Errorf("%w %q: expected %s", ErrUnknownAlgorithm, text, err)
	}
	*a = Algorithm(i)
	return nil
}

// parseName returns the index of name in names, or an error listing them
// ("a, b or c").
func parseName(names []string, name string) (int, error) {
	if i := slices.Index(names, name); i >= 0 {
		return i, nil
	}
	return 0, errors.New(strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1])
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

// MaxCount is the largest Requests and Burst of a configured limit (and the
// largest hits of one request, descriptor.Bounds' max_hits_addend): 2^53-1,
// the largest integer the Redis store's Lua arithmetic (IEEE doubles)
// represents exactly. It holds for every store, so that a limit that
// counts in memory also counts on Redis; ValidateConfig checks it.
const MaxCount = 1<<53 - 1

// MaxTolerance is the longest token bucket tolerance B*T (burst times
// emission interval) that the algorithm honours, 2^62 ns (about 146 years);
// a longer one is capped (see TokenBucket). ValidateConfig refuses a limit
// whose tolerance would be capped, so a configured burst is always admitted
// in full.
const MaxTolerance = 1 << 62

// ValidateConfig reports whether a configuration may set l: Validate's
// checks, Requests and Burst at most MaxCount, and, for a token bucket, a
// tolerance Capacity()*ceil(Period/Requests) of at most MaxTolerance (the
// error then names MaxBurst, the largest burst for that rate). Its errors
// wrap ErrInvalidLimit and are *field.Error values at "requests_per_unit"
// or "burst" (the rule file's names of Requests and Burst), so a config
// loader can place them. Stores accept more than this (Validate), but every
// limit it accepts is counted exactly and alike by every store.
func (l Limit) ValidateConfig() error {
	switch {
	case l.Requests > MaxCount:
		return field.Errorf("requests_per_unit", "%w: %d is beyond %d (2^53-1), the largest count every store keeps exactly", ErrInvalidLimit, l.Requests, int64(MaxCount))
	case l.Burst > MaxCount:
		return field.Errorf("burst", "%w: %d is beyond %d (2^53-1), the largest count every store keeps exactly", ErrInvalidLimit, l.Burst, int64(MaxCount))
	}
	if err := l.Validate(); err != nil {
		return err
	}
	if l.Algorithm != TokenBucket || l.Requests == 0 {
		return nil
	}
	if maxB := l.MaxBurst(); l.Capacity() > maxB {
		path, what := "burst", "burst"
		if l.Burst == 0 {
			path, what = "requests_per_unit", "burst (requests_per_unit, as no burst is set)"
		}
		return field.Errorf(path, "%w: a token bucket refilling %d per %v holds at most %d tokens (146 years of refill), and its %s is %d: "+
			"set burst to %d or less, or raise the rate", ErrInvalidLimit, l.Requests, l.Period, maxB, what, l.Capacity(), maxB)
	}
	return nil
}

// MaxBurst returns the largest token bucket capacity whose tolerance
// stays within MaxTolerance at l's rate: floor(2^62 / ceil(Period/Requests)),
// or MaxCount when that is smaller or Requests is 0.
func (l Limit) MaxBurst() int64 {
	if l.Requests <= 0 || l.Period <= 0 {
		return MaxCount
	}
	return min(MaxTolerance/int64(l.Emission()), MaxCount)
}

// Emission returns a token bucket's emission interval T = ceil(P/R), for
// R > 0: the time it takes to gain a token.
func (l Limit) Emission() time.Duration {
	p := int64(l.Period)
	t := p / l.Requests
	if p%l.Requests != 0 {
		t++
	}
	return time.Duration(t)
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
