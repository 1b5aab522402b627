package limiter

import (
	"context"
	"fmt"
	"time"
)

// Request asks a Store to count Hits against the counter named Key under
// Limit. Key is opaque to the store (see descriptor.AppendKey); two requests
// with the same Key in one call refer to the same counter. Hits == 0 only
// reads the counter. Key may alias a byte buffer that the caller reuses
// after Take returns, so a store that keeps a key (a map insert, a local
// cache) copies it with strings.Clone.
type Request struct {
	Key   string
	Limit Limit
	Hits  int64
	// Shadow marks a request that is evaluated and counted but never vetoes
	// its call: in CountIfAllAllowed mode a refused Shadow request does not
	// stop the call's other requests from being counted (a rule in
	// shadow_mode must not change what the enforced rules count). It makes
	// no difference in CountAll mode.
	Shadow bool
	// Lease, when not nil, lets a leasing layer (pkg/lease) answer the
	// request from a block of quota it took earlier; every other store
	// ignores it. The rule owns it: stores never modify it.
	Lease *Lease
}

// Result is the outcome of one Request.
type Result struct {
	// Allowed is false when the hits did not fit in the limit.
	Allowed bool
	// Limit is the limit's capacity (Limit.Capacity).
	Limit int64
	// Remaining is how many more hits the limit admits right now (>= 0).
	Remaining int64
	// ResetAfter is how long until the counter is back to its full capacity
	// (fixed window: the end of the window).
	ResetAfter time.Duration
	// RetryAfter is, when !Allowed, how long until the same hits could be
	// admitted; zero when Allowed.
	RetryAfter time.Duration
}

// Mode tells a Store what to count when some requests of one call are refused.
type Mode uint8

const (
	// CountAll applies every request's hits independently, as
	// envoyproxy/ratelimit does: an admitted request is counted even when
	// another request of the same call is refused. The zero value.
	CountAll Mode = iota
	// CountIfAllAllowed counts nothing unless every request of the call is
	// admitted (Shadow requests aside), so a refused call does not burn the
	// caller's other quotas.
	CountIfAllAllowed
)

// modeNames are the count_mode names of the server file.
var modeNames = [...]string{"all", "if_all_allowed"}

// String returns the configuration name of m, e.g. "all".
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// MarshalText returns the configuration name of m; an unknown m is an error.
func (m Mode) MarshalText() ([]byte, error) {
	if int(m) < len(modeNames) {
		return []byte(modeNames[m]), nil
	}
	return nil, fmt.Errorf("unknown count mode %d", uint8(m))
}

// UnmarshalText sets m to the Mode named text ("all" or "if_all_allowed").
func (m *Mode) UnmarshalText(text []byte) error {
	i, err := parseName(modeNames[:], string(text))
	if err != nil {
		return fmt.Errorf("unknown count mode %q: expected %s", text, err)
	}
	*m = Mode(i)
	return nil
}

// Store keeps counters. Implementations: memstore.Store, redisstore.Store and
// the failover chain. Every implementation decides exactly as Limit.Eval and
// ApplyAll specify, and passes the conformance suite limitertest.Run.
type Store interface {
	// Take applies reqs and writes one Result per request into res, which has
	// len(reqs) elements. It is safe for concurrent use and may block on
	// I/O until ctx is done. A non-nil error means the backend could not
	// decide (unreachable, timeout, bad reply) or the requests were invalid
	// (CheckRequests); it never means "over limit", and res is then
	// undefined. Take does not retain reqs or res.
	Take(ctx context.Context, mode Mode, reqs []Request, res []Result) error
}
