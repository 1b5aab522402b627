package redisstore

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

var (
	benchLimits = limitertest.BenchLimits()
	benchKeys   = limitertest.BenchKeys
)

// BenchmarkTake measures a Take against a local redis-server: one key per
// call serially and from 16 or 64 goroutines (one hot key, or keys spread
// over 100k), and three keys per call. It reports the EVALSHA calls per
// Take from INFO commandstats, which must be exactly 1.
func BenchmarkTake(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	keys := benchKeys(100_000)
	ctx := context.Background()
	for _, ap := range []bool{false, true} {
		name := "plain"
		if ap {
			name = "auto_pipeline"
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(Config{URL: URL(srv.URL()), Pool: Pool{Size: 64}, AutoPipeline: new(ap)}, Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			if err := s.LoadScript(ctx); err != nil {
				b.Fatal(err)
			}
			benchmarkTake(b, s, srv, keys)
		})
	}
}

func benchmarkTake(b *testing.B, s *Store, srv *redistest.Server, keys []string) {
	ctx := context.Background()

	// concurrency 0 runs serially; otherwise that many goroutines call Take
	// (rounded to a multiple of GOMAXPROCS).
	run := func(b *testing.B, concurrency int, reqsFor func(i int) []limiter.Request) {
		before, err := srv.CommandStats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		var takes atomic.Int64
		b.ReportAllocs()
		if concurrency > 0 {
			b.SetParallelism(max(1, concurrency/runtime.GOMAXPROCS(0)))
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				reqs := reqsFor(int(next.Add(1)) * 7919)
				res := make([]limiter.Result, len(reqs))
				i := 0
				for pb.Next() {
					i++
					reqs = reqsFor(i*7919 + int(next.Load()))
					if err := s.Take(ctx, limiter.CountAll, reqs, res); err != nil {
						b.Error(err)
						return
					}
					takes.Add(1)
					if !res[0].Allowed {
						b.Errorf("refused: %+v", res[0])
						return
					}
				}
			})
		} else {
			reqs := reqsFor(0)
			res := make([]limiter.Result, len(reqs))
			i := 0
			for b.Loop() {
				i++
				reqs = reqsFor(i)
				if err := s.Take(ctx, limiter.CountAll, reqs, res); err != nil {
					b.Fatal(err)
				}
				takes.Add(1)
			}
			if !res[0].Allowed {
				b.Fatalf("last call refused: %+v", res[0])
			}
		}
		after, err := srv.CommandStats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if n := takes.Load(); n > 0 {
			evalsha := after["evalsha"] - before["evalsha"]
			b.ReportMetric(float64(evalsha)/float64(n), "evalsha/op")
			if evalsha != n || after["eval"] != before["eval"] {
				b.Errorf("EVALSHA calls: got %d (and %d EVAL) for %d Takes, want one EVALSHA each", evalsha, after["eval"]-before["eval"], n)
			}
		}
	}

	for _, l := range benchLimits {
		b.Run(l.Algorithm.String(), func(b *testing.B) {
			one := []limiter.Request{{Key: keys[0], Limit: l, Hits: 1}}
			b.Run("one_key", func(b *testing.B) {
				run(b, 0, func(int) []limiter.Request { return one })
			})
			for _, c := range []int{16, 64} {
				b.Run(fmt.Sprintf("hot_key_c%d", c), func(b *testing.B) {
					run(b, c, func(int) []limiter.Request { return one })
				})
				b.Run(fmt.Sprintf("100k_keys_c%d", c), func(b *testing.B) {
					run(b, c, func(i int) []limiter.Request {
						return []limiter.Request{{Key: keys[i%len(keys)], Limit: l, Hits: 1}}
					})
				})
			}
		})
	}
	three := []limiter.Request{
		{Key: keys[1], Limit: benchLimits[0], Hits: 1},
		{Key: keys[2], Limit: benchLimits[1], Hits: 1},
		{Key: keys[3], Limit: benchLimits[2], Hits: 1},
	}
	b.Run("three_keys", func(b *testing.B) {
		run(b, 0, func(int) []limiter.Request { return three })
	})
}
