package chain

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

// The chain is a limiter.Store like any other: it passes the conformance
// suite when it serves from its first backend and when it has failed over.
func TestConformance(t *testing.T) {
	tests := []struct {
		name    string
		primary func() limiter.Store // nil: memory only
	}{
		{name: "memory only"},
		{name: "failed over", primary: func() limiter.Store { s := &fakeStore{}; s.set(errDown, false); return s }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
				clock := limitertest.NewFakeClock(time.Unix(1_700_000_000, 0))
				mem, err := memstore.New(memstore.Options{Now: clock.Now})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { mem.Close() })
				var bs []Backend
				if tc.primary != nil {
					bs = append(bs, Backend{Name: "redis", Store: tc.primary()})
				}
				bs = append(bs, Backend{Name: "memory", Store: mem, Local: true})
				return newChain(t, Options{Backends: bs, Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 2}}}), clock
			})
		})
	}
}
