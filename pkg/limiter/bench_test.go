package limiter

import (
	"testing"
	"time"
)

// BenchmarkApply measures the pure decision of each algorithm.
func BenchmarkApply(b *testing.B) {
	for _, l := range []Limit{
		{Requests: 1e12, Period: time.Minute},
		{Requests: 1e12, Period: time.Minute, Algorithm: SlidingWindow},
		{Requests: 1e12, Period: time.Minute, Algorithm: TokenBucket},
	} {
		b.Run(l.Algorithm.String(), func(b *testing.B) {
			var st State
			now := t0
			var r Result
			b.ReportAllocs()
			for b.Loop() {
				r = l.Apply(&st, now, 1)
				now = now.Add(time.Microsecond)
			}
			if !r.Allowed {
				b.Fatalf("last call refused: %+v", r)
			}
		})
	}
}
