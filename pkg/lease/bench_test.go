package lease

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// BenchmarkTake: a hot key answered from its block (no store call, no
// allocation), and a cold key passed through to the store.
func BenchmarkTake(b *testing.B) {
	clock := &fakeClock{now: t0}
	for _, tc := range []struct {
		name  string
		key   func(i int) string
		lease *limiter.Lease
	}{
		{"hot", func(int) string { return "hot" }, &limiter.Lease{}},
		{"cold", func(i int) string { return fmt.Sprintf("cold-%d", i) }, &limiter.Lease{HotAfter: limiter.MaxLeaseHotAfter}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			inner := &counting{Store: nopStore{}}
			s, err := New(inner, Options{Now: clock.Now})
			if err != nil {
				b.Fatal(err)
			}
			l := limiter.Limit{Requests: 1 << 50, Period: time.Hour}
			keys := make([]string, 1000)
			for i := range keys {
				keys[i] = tc.key(i * 101)
			}
			reqs := []limiter.Request{{Limit: l, Hits: 1, Lease: tc.lease}}
			res := make([]limiter.Result, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				reqs[0].Key = keys[i%len(keys)]
				if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(inner.calls.Load())/float64(b.N), "calls/op")
		})
	}
}

// nopStore admits everything with a full quota left.
type nopStore struct{}

func (nopStore) Take(_ context.Context, _ limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	for i := range reqs {
		res[i] = limiter.Result{Allowed: true, Limit: reqs[i].Limit.Capacity(), Remaining: reqs[i].Limit.Capacity() - reqs[i].Hits, ResetAfter: time.Hour}
	}
	return nil
}
