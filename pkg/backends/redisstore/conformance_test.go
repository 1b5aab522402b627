package redisstore

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

// TestConformance runs limitertest against a real redis-server, with the
// server's TIME (the production path) and with a fake clock sent to the
// script (window edges and exact durations).
func TestConformance(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{}) // shared: the suite uses unique keys
	open := func(t *testing.T, opts Options) limiter.Store {
		client := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true, MaxRetries: -1})
		s, err := New(client, opts)
		if err != nil {
			t.Fatalf("New: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	t.Run("ServerTime", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
			return open(t, Options{}), nil
		})
	})
	t.Run("FakeClock", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
			clock := limitertest.NewFakeClock(time.Unix(1_700_000_000, 0))
			return open(t, Options{Now: clock.Now, ExtraTTL: time.Hour}), clock
		})
	})
	t.Run("ServerTimeAutoPipeline", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
			s, err := Open(Config{URL: URL(srv.URL()), AutoPipeline: new(true)}, Options{})
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			return s, nil
		})
	})
	t.Run("FakeClockWithLocalCache", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
			clock := limitertest.NewFakeClock(time.Unix(1_700_000_000, 0))
			return open(t, Options{Now: clock.Now, ExtraTTL: time.Hour, LocalCacheSize: 1000}), clock
		})
	})
}
