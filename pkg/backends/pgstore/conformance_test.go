package pgstore

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

// TestConformance runs limitertest against a real PostgreSQL, with the
// server's clock (the production path) and with a fake clock sent to the
// take function (window edges and exact durations).
func TestConformance(t *testing.T) {
	srv := pgtest.Shared(t) // shared: the suite uses unique keys
	schema := newSchema()
	openStore(t, srv, Settings{Schema: schema, AutoMigrate: true})
	t.Run("ServerClock", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
			return openStore(t, srv, Settings{Schema: schema}), nil
		})
	})
	t.Run("FakeClock", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
			clock := limitertest.NewFakeClock(time.Unix(1_700_000_000, 0))
			return openStore(t, srv, Settings{Schema: schema, Now: clock.Now}), clock
		})
	})
}
