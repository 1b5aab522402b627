// Package ratelimit applies extauthz rate limits inside a Go service: a
// Limiter decides, in process from a config file or remotely against a
// running extauthz, and net/http middleware (and gRPC interceptors, in
// package grpclimit) turn requests into descriptors and decisions into 429s,
// headers and a request-context value.
//
// The rules are extauthz's (envoyproxy/ratelimit's format): a request
// carries descriptors, lists of key/value entries, for a domain; each
// descriptor that matches a rule is counted against that rule's limit.
//
// Stable: Limiter, Decider, Decision, Status, Descriptor, Entry, Dial,
// Open, the middleware and key functions. Unstable (may change without
// notice): New, which takes a pkg/config value, and RemoteOptions.DialOptions.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// Entry is one key/value pair of a descriptor, e.g. {"remote_address",
// "10.0.0.1"}: pkg/descriptor's, so that in-process decisions use the
// caller's descriptors without copying them.
type Entry = descriptor.Entry

// Descriptor is an ordered list of entries, matched against a domain's rule
// tree as Envoy's descriptors are.
type Descriptor []Entry

// Decider decides whether a request may proceed. The middleware and the
// interceptors accept any Decider; *Limiter is the one this package
// provides.
//
// Decide is called once per request, concurrently, and may block (a
// remote call). It must not keep descriptors, their entries or their
// backing arrays after it returns: callers reuse them. An error means no
// decision was made (see FailureMode); ctx's error when ctx is done.
type Decider interface {
	Decide(ctx context.Context, domain string, descriptors []Descriptor) (Decision, error)
}

// Decision is the answer for one request.
type Decision struct {
	// Allowed is false when any non-shadow descriptor is over its limit (or
	// the failure mode refused the request).
	Allowed bool
	// Statuses has one status per descriptor, in request order (empty when
	// the failure mode answered, see Failed).
	Statuses []Status
	// RetryAfter is how long a refused client should wait; zero when
	// allowed.
	RetryAfter time.Duration
	// Failed is true when no decision could be made and the limiter's
	// failure mode answered instead (RemoteOptions.FailureMode FailOpen or
	// FailClosed), or, in process, when the backends failed and the
	// config's failure_mode (open, closed) answered. A remote server's own
	// failure_mode answers with ordinary statuses, not marked (the
	// RateLimitService does not say).
	Failed bool
}

// Status is the decision for one descriptor.
type Status struct {
	// Counted is true when a limit applies to the descriptor; false when no
	// rule matches, or the rule is unlimited or replaced by another rule of
	// the request. The fields below are set only when Counted.
	Counted bool
	// Allowed is false when the descriptor is over its limit (never for a
	// shadow rule).
	Allowed bool
	// Limit is the number of requests allowed per Period (a token
	// bucket's refill rate).
	Limit  int64
	Period time.Duration
	// Burst is a token bucket's capacity, the most Remaining can reach,
	// when the rule sets one; 0 otherwise, and always 0 from remote
	// limiters (the RateLimitService does not report it).
	Burst int64
	// Remaining is the number of requests left in the current period.
	Remaining int64
	// Reset is the time until the counter resets (or, for token buckets,
	// refills).
	Reset time.Duration
	// Rule is the rule's name, or its path when it has none.
	Rule string
	// Shadow is true for a shadow-mode rule: counted, never refusing. A
	// shadow rule over its limit shows Remaining 0 and Allowed true.
	// Remote limiters cannot tell (the RateLimitService does not say) and
	// always report false.
	Shadow bool
}

// Limiting returns the status that headers describe: the most restrictive
// counted, non-shadow status (a refusing one first, then the lowest
// remaining, then the longest reset, then the smallest limit, then request
// order), and false when none exists.
func (d Decision) Limiting() (Status, bool) {
	best := -1
	for i := range d.Statuses {
		s := &d.Statuses[i]
		if !s.Counted || s.Shadow {
			continue
		}
		if best < 0 || moreRestrictive(s, &d.Statuses[best]) {
			best = i
		}
	}
	if best < 0 {
		return Status{}, false
	}
	return d.Statuses[best], true
}

func moreRestrictive(a, b *Status) bool {
	if a.Allowed != b.Allowed {
		return !a.Allowed
	}
	if a.Remaining != b.Remaining {
		return a.Remaining < b.Remaining
	}
	if a.Reset != b.Reset {
		return a.Reset > b.Reset
	}
	return a.Limit < b.Limit
}

// Merge returns the decision of a request decided twice (a global
// middleware and a per-handler one): refused when either refused, every
// status of both, the longest wait.
func Merge(a, b Decision) Decision {
	return Decision{
		Allowed:    a.Allowed && b.Allowed,
		Statuses:   append(append(make([]Status, 0, len(a.Statuses)+len(b.Statuses)), a.Statuses...), b.Statuses...),
		RetryAfter: max(a.RetryAfter, b.RetryAfter),
		Failed:     a.Failed || b.Failed,
	}
}

// FailureMode says what Decide answers when no decision can be made.
type FailureMode uint8

const (
	// FailError returns the error (the default): the middleware answers
	// 503, the interceptors Unavailable.
	FailError FailureMode = iota
	// FailOpen allows the request (Decision.Failed set).
	FailOpen
	// FailClosed refuses it (Decision.Failed set, RetryAfter from the
	// options).
	FailClosed
)

var failureNames = [...]string{FailError: "error", FailOpen: "open", FailClosed: "closed"}

// String returns "error", "open" or "closed".
func (m FailureMode) String() string {
	if int(m) < len(failureNames) {
		return failureNames[m]
	}
	return fmt.Sprintf("FailureMode(%d)", m)
}

// MarshalText implements encoding.TextMarshaler.
func (m FailureMode) MarshalText() ([]byte, error) {
	if int(m) >= len(failureNames) {
		return nil, fmt.Errorf("ratelimit: unknown failure mode %d", m)
	}
	return []byte(failureNames[m]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler: "error" (or ""),
// "open" or "closed".
func (m *FailureMode) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*m = FailError
		return nil
	}
	for i, n := range failureNames {
		if string(b) == n {
			*m = FailureMode(i)
			return nil
		}
	}
	return fmt.Errorf("ratelimit: failure mode %q: want error, open or closed", b)
}

// ErrClosed is returned by Decide after Close.
var ErrClosed = errors.New("ratelimit: limiter closed")
