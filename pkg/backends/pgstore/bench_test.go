package pgstore

import (
	"context"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

// BenchmarkTake measures a Take against a local PostgreSQL: one key per
// call serially and from 16 or 64 goroutines (one hot key, or keys spread
// over 100k), and three keys per call (one per algorithm). The pool has 16
// connections. Not run by make test (only compiled).
func BenchmarkTake(b *testing.B) {
	srv := pgtest.Shared(b)
	s := openStore(b, srv, Settings{MaxConns: 16, CleanupInterval: -1})
	keys := limitertest.BenchKeys(100_000)
	limits := limitertest.BenchLimits()
	ctx := context.Background()
	run := func(b *testing.B, concurrency int, reqsFor func(i int) []limiter.Request) {
		b.ReportAllocs()
		if concurrency == 0 {
			res := make([]limiter.Result, 3)
			for i := 0; b.Loop(); i++ {
				if err := s.Take(ctx, limiter.CountAll, reqsFor(i), res); err != nil {
					b.Fatal(err)
				}
			}
			return
		}
		b.SetParallelism(max(1, concurrency/runtime.GOMAXPROCS(0)))
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			res := make([]limiter.Result, 3)
			i := int(next.Add(1)) * 7919
			for pb.Next() {
				i++
				if err := s.Take(ctx, limiter.CountAll, reqsFor(i), res); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	for _, l := range limits {
		one := func(int) []limiter.Request { return []limiter.Request{{Key: keys[0], Limit: l, Hits: 1}} }
		spread := func(i int) []limiter.Request {
			return []limiter.Request{{Key: keys[i%len(keys)], Limit: l, Hits: 1}}
		}
		b.Run(l.Algorithm.String()+"/one_key", func(b *testing.B) { run(b, 0, one) })
		b.Run(l.Algorithm.String()+"/one_key_c16", func(b *testing.B) { run(b, 16, one) })
		b.Run(l.Algorithm.String()+"/many_keys_c16", func(b *testing.B) { run(b, 16, spread) })
		b.Run(l.Algorithm.String()+"/many_keys_c64", func(b *testing.B) { run(b, 64, spread) })
	}
	three := func(i int) []limiter.Request {
		reqs := make([]limiter.Request, len(limits))
		for j, l := range limits {
			reqs[j] = limiter.Request{Key: keys[(i+j*33_333)%len(keys)], Limit: l, Hits: 1}
		}
		return reqs
	}
	b.Run("three_keys", func(b *testing.B) { run(b, 0, three) })
	b.Run("three_keys_c16", func(b *testing.B) { run(b, 16, three) })
}
