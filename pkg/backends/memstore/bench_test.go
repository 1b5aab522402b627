package memstore

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

var (
	benchLimits = limitertest.BenchLimits()
	benchKeys   = limitertest.BenchKeys
)

// BenchmarkTake measures the memory decision path, time.Now included, for
// one descriptor per call (the target: under 200 ns/op, 0 allocs/op), and a
// three-descriptor call.
func BenchmarkTake(b *testing.B) {
	const manyKeys = 100_000
	keys := benchKeys(manyKeys)
	for _, l := range benchLimits {
		b.Run(l.Algorithm.String(), func(b *testing.B) {
			s := newBenchStore(b)
			prefill(b, s, keys, l)

			b.Run("one_key", func(b *testing.B) {
				reqs := []limiter.Request{{Key: keys[0], Limit: l, Hits: 1}}
				res := make([]limiter.Result, 1)
				b.ReportAllocs()
				for b.Loop() {
					if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
						b.Fatal(err)
					}
				}
				if !res[0].Allowed {
					b.Fatalf("last call refused: %+v", res[0])
				}
			})
			b.Run("one_key_parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					reqs := []limiter.Request{{Key: keys[0], Limit: l, Hits: 1}}
					res := make([]limiter.Result, 1)
					for pb.Next() {
						if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("many_keys", func(b *testing.B) {
				reqs := []limiter.Request{{Limit: l, Hits: 1}}
				res := make([]limiter.Result, 1)
				i := 0
				b.ReportAllocs()
				for b.Loop() {
					reqs[0].Key = keys[i%manyKeys]
					i++
					if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("many_keys_parallel", func(b *testing.B) {
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					reqs := []limiter.Request{{Limit: l, Hits: 1}}
					res := make([]limiter.Result, 1)
					i := rand.IntN(manyKeys)
					for pb.Next() {
						reqs[0].Key = keys[i%manyKeys]
						i++
						if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("three_keys_if_all_allowed", func(b *testing.B) {
				reqs := []limiter.Request{{Key: keys[1], Limit: l, Hits: 1}, {Key: keys[2], Limit: l, Hits: 1}, {Key: keys[3], Limit: l, Hits: 1}}
				res := make([]limiter.Result, 3)
				b.ReportAllocs()
				for b.Loop() {
					if err := s.Take(context.Background(), limiter.CountIfAllAllowed, reqs, res); err != nil {
						b.Fatal(err)
					}
				}
			})
			if got := s.Len(); got != manyKeys {
				b.Fatalf("store holds %d keys after the runs, want %d: benchmarks created or lost keys", got, manyKeys)
			}
		})
	}
}

// BenchmarkTakeFrozenClock is BenchmarkTake's one_key case with a clock that
// costs nothing, separating the store's own cost from time.Now (which is
// slow on some virtual machines).
func BenchmarkTakeFrozenClock(b *testing.B) {
	now := time.Now()
	for _, l := range benchLimits {
		b.Run(l.Algorithm.String(), func(b *testing.B) {
			s, err := New(Options{SweepInterval: -1, Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			reqs := []limiter.Request{{Key: benchKeys(1)[0], Limit: l, Hits: 1}}
			res := make([]limiter.Result, 1)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
					b.Fatal(err)
				}
			}
			if !res[0].Allowed || s.Len() != 1 {
				b.Fatalf("got %+v and %d keys, want allowed and 1 key", res[0], s.Len())
			}
		})
	}
}

// BenchmarkTakeNewKeys measures inserting into a full store (each call a new
// key, so every insert evicts): the cost of a flood of distinct values.
func BenchmarkTakeNewKeys(b *testing.B) {
	s, err := New(Options{MaxKeys: 10_000, SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	keys := benchKeys(1 << 20)
	reqs := []limiter.Request{{Limit: benchLimits[0], Hits: 1}}
	res := make([]limiter.Result, 1)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		reqs[0].Key = keys[i&(1<<20-1)]
		i++
		if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
			b.Fatal(err)
		}
	}
	if got := s.Len(); got > 10_000 {
		b.Fatalf("store holds %d keys, want at most MaxKeys 10000", got)
	}
}

func newBenchStore(b *testing.B) *Store {
	b.Helper()
	s, err := New(Options{SweepInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// prefill creates every key, so the benchmarks measure existing keys.
func prefill(b *testing.B, s *Store, keys []string, l limiter.Limit) {
	b.Helper()
	res := make([]limiter.Result, 1)
	for _, k := range keys {
		if err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: k, Limit: l, Hits: 1}}, res); err != nil {
			b.Fatal(err)
		}
	}
	if got := s.Len(); got != len(keys) {
		b.Fatalf("prefilled %d keys, store holds %d", len(keys), got)
	}
}
