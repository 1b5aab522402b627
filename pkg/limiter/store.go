package limiter

import (
	"context"
	"time"
)

// Request asks a Store to count Hits against the counter named Key under
// Limit. Key is opaque to the store (see descriptor.AppendKey); two requests
// with the same Key in one call refer to the same counter. Hits == 0 only
// reads the counter.
type Request struct {
	Key   string
	Limit Limit
	Hits  int64
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
	// admitted, so a refused call does not burn the caller's other quotas.
	CountIfAllAllowed
)

// Store keeps counters. Implementations: memstore.Store, redisstore.Store and
// the failover chain.
type Store interface {
	// Take applies reqs and writes one Result per request into res, which has
	// len(reqs) elements. It is safe for concurrent use and may block on
	// I/O until ctx is done. A non-nil error means the backend could not
	// decide (unreachable, timeout, bad reply); it never means "over limit",
	// and res is then undefined.
	Take(ctx context.Context, mode Mode, reqs []Request, res []Result) error
}
