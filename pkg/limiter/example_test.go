package limiter_test

import (
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// A fixed window of 3 requests per minute, aligned to the minute: the
// fourth request is refused until the next minute starts, and refused hits
// are counted (as in envoyproxy/ratelimit).
func ExampleLimit_Apply() {
	l := limiter.Limit{Requests: 3, Period: time.Minute}
	var st limiter.State // one per key; the zero State is a fresh counter
	start := time.Date(2026, 3, 1, 12, 0, 40, 0, time.UTC)
	for i, at := range []time.Duration{0, 5 * time.Second, 10 * time.Second, 15 * time.Second, 20 * time.Second} {
		now := start.Add(at)
		r := l.Apply(&st, now, 1)
		fmt.Printf("request %d at %s allowed=%v remaining=%d reset=%v retry=%v\n",
			i+1, now.Format("04:05"), r.Allowed, r.Remaining, r.ResetAfter, r.RetryAfter)
	}
	// Output:
	// request 1 at 00:40 allowed=true remaining=2 reset=20s retry=0s
	// request 2 at 00:45 allowed=true remaining=1 reset=15s retry=0s
	// request 3 at 00:50 allowed=true remaining=0 reset=10s retry=0s
	// request 4 at 00:55 allowed=false remaining=0 reset=5s retry=5s
	// request 5 at 01:00 allowed=true remaining=2 reset=1m0s retry=0s
}

// A token bucket of 10 per second with a burst of 2: after the burst, one
// request every 100ms.
func ExampleLimit_Apply_tokenBucket() {
	l := limiter.Limit{Requests: 10, Period: time.Second, Burst: 2, Algorithm: limiter.TokenBucket}
	var st limiter.State
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, at := range []time.Duration{0, 0, 0, 50 * time.Millisecond, 100 * time.Millisecond} {
		r := l.Apply(&st, now.Add(at), 1)
		fmt.Printf("+%v allowed=%v remaining=%d retry=%v\n", at, r.Allowed, r.Remaining, r.RetryAfter)
	}
	// Output:
	// +0s allowed=true remaining=1 retry=0s
	// +0s allowed=true remaining=0 retry=0s
	// +0s allowed=false remaining=0 retry=100ms
	// +50ms allowed=false remaining=0 retry=50ms
	// +100ms allowed=true remaining=0 retry=0s
}

// Eval is the pure form, and a read (zero hits) never changes the state.
func ExampleLimit_Eval() {
	l := limiter.Limit{Requests: 10, Period: time.Minute, Algorithm: limiter.SlidingWindow}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	st, _ := l.Eval(limiter.State{}, now, 8) // 8 hits in the 12:00 window
	// At 12:01:45 a quarter of the previous window still counts: ceil(8/4) = 2.
	_, r := l.Eval(st, now.Add(105*time.Second), 0)
	fmt.Println("remaining:", r.Remaining, "reset in:", r.ResetAfter)
	// Output:
	// remaining: 8 reset in: 15s
}

// ApplyAll applies the requests of one call; with CountIfAllAllowed a
// refused request means nothing is counted.
func ExampleApplyAll() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	perUser := limiter.Limit{Requests: 100, Period: time.Hour}
	perIP := limiter.Limit{Requests: 1, Period: time.Minute}
	reqs := []limiter.Request{
		{Key: "user:alice", Limit: perUser, Hits: 1},
		{Key: "ip:10.0.0.1", Limit: perIP, Hits: 1},
	}
	states := make([]limiter.State, len(reqs)) // loaded by the store; zero = new key
	res := make([]limiter.Result, len(reqs))
	for call := 1; call <= 2; call++ {
		limiter.ApplyAll(limiter.CountIfAllAllowed, now, reqs, states, res)
		fmt.Printf("call %d: user allowed=%v remaining=%d; ip allowed=%v\n", call, res[0].Allowed, res[0].Remaining, res[1].Allowed)
		// the store writes states back here
	}
	// Output:
	// call 1: user allowed=true remaining=99; ip allowed=true
	// call 2: user allowed=true remaining=99; ip allowed=false
}
