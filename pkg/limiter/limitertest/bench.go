package limitertest

import (
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// BenchLimits returns one limit per algorithm, large enough that nearly every
// benchmarked call is admitted and updates state, as on a healthy server.
func BenchLimits() []limiter.Limit {
	return []limiter.Limit{
		{Requests: 1e12, Period: time.Minute},
		{Requests: 1e12, Period: time.Minute, Algorithm: limiter.SlidingWindow},
		{Requests: 1e12, Period: time.Minute, Algorithm: limiter.TokenBucket},
	}
}

// BenchKeys returns n distinct keys shaped like descriptor keys (a domain
// and a remote_address value, length-prefixed), for store benchmarks.
func BenchKeys(n int) []string {
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("\x04edge\x0eremote_address\x0b10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
	}
	return keys
}
