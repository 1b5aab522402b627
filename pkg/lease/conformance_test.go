package lease

import (
	"context"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

// withLease gives every request a lease that never turns hot, so that the
// lease Store takes its leasing path (hotness counted, answers learned)
// while deciding exactly as its inner store.
type withLease struct{ s *Store }

var neverHot = &limiter.Lease{HotAfter: limiter.MaxLeaseHotAfter}

func (w withLease) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	leased := make([]limiter.Request, len(reqs))
	for i, r := range reqs {
		r.Lease = neverHot
		leased[i] = r
	}
	return w.s.Take(ctx, mode, leased, res)
}

// A lease Store is a limiter.Store like any other: without leases, and
// with keys that never turn hot, it passes the conformance suite.
func TestConformance(t *testing.T) {
	for _, leased := range []bool{false, true} {
		name := "no lease"
		if leased {
			name = "cold keys"
		}
		t.Run(name, func(t *testing.T) {
			limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
				clock := limitertest.NewFakeClock(time.Unix(1_700_000_000, 0))
				mem, err := memstore.New(memstore.Options{Now: clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = mem.Close() })
				s := newLease(t, mem, Options{Now: clock.Now})
				if leased {
					return withLease{s}, clock
				}
				return s, clock
			})
		})
	}
}
