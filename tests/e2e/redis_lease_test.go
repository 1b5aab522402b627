package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/internal/redistest"
)

// Leased quotas (rate_limit.lease) through the real binary: three
// processes share one Redis; 48 clients spread over them hammer one key.
// Within one window the fleet never admits more than the limit, and a key
// far from its limit costs a handful of Redis calls for thousands of
// decisions.
func TestRedisDistributedLease(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := fmt.Sprintf(`backends:
  - type: redis
    url: redis://%s/0
breaker:
  call_timeout: 2s
domains:
  - domain: lease_tight
    descriptors:
      - key: client
        rate_limit: {unit: minute, requests_per_unit: 500, lease: {fraction: 0.2, hot_after: 2}}
  - domain: lease_loose
    descriptors:
      - key: client
        rate_limit: {unit: minute, requests_per_unit: 100000000, lease: {}}
`, srv.Addr)
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", cfg)
	var clients []rlsv3.RateLimitServiceClient
	for range distProcesses {
		p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
		clients = append(clients, rlsv3.NewRateLimitServiceClient(p.Dial(t)))
	}
	ctx := context.Background()
	for _, tc := range []struct {
		domain    string
		perClient int
		check     func(admitted, calls int64) error
	}{
		{"lease_tight", 40, func(admitted, _ int64) error { // 1920 calls for a limit of 500
			if admitted > 500 || admitted < 250 {
				return fmt.Errorf("admitted %d, want at most the limit 500 (and not half of it stranded)", admitted)
			}
			return nil
		}},
		{"lease_loose", 100, func(admitted, calls int64) error { // 4800 calls, all admitted
			if admitted != 48*100 {
				return fmt.Errorf("admitted %d of %d far below the limit", admitted, 48*100)
			}
			if calls > admitted/20 {
				return fmt.Errorf("%d Redis script calls for %d decisions, want at most 1 in 20", calls, admitted)
			}
			return nil
		}},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			awayFromWindowEdge(time.Minute, 15*time.Second)
			before, err := srv.CommandStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var admitted, failed atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			for i := range 48 {
				c := clients[i%len(clients)]
				wg.Go(func() {
					for range tc.perClient {
						cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
						resp, err := c.ShouldRateLimit(cctx, distRequest(tc.domain, "hammer"))
						cancel()
						switch {
						case err != nil:
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err.Error())
						case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
							admitted.Add(1)
						}
					}
				})
			}
			wg.Wait()
			after, err := srv.CommandStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n := failed.Load(); n > 0 {
				t.Fatalf("%d calls failed, first: %v", n, firstErr.Load())
			}
			calls := after["evalsha"] + after["eval"] - before["evalsha"] - before["eval"]
			t.Logf("%s: %d admitted of %d, %d Redis script calls", tc.domain, admitted.Load(), 48*tc.perClient, calls)
			if err := tc.check(admitted.Load(), calls); err != nil {
				t.Error(err)
			}
		})
	}
}

// A replica that shuts down gives its blocks' unused hits back to Redis:
// after 100 decisions (the first a normal call, then a block of half the
// remaining quota), a stopped process leaves only the 100 hits counted, so
// the next process sees them and no more.
func TestRedisLeaseReturnedAtShutdown(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	cfg := fmt.Sprintf(`backends:
  - type: redis
    url: redis://%s/0
domains:
  - domain: lease_return
    descriptors:
      - key: client
        rate_limit: {unit: hour, requests_per_unit: 1000000, lease: {fraction: 0.5, hot_after: 1}}
`, srv.Addr)
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", cfg)
	awayFromWindowEdge(time.Hour, 30*time.Second)
	ctx := context.Background()
	call := func(c rlsv3.RateLimitServiceClient) *rlsv3.RateLimitResponse {
		t.Helper()
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := c.ShouldRateLimit(cctx, distRequest("lease_return", "leaver"))
		if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("ShouldRateLimit: %v, %v", resp, err)
		}
		return resp
	}
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	c := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	for range 100 {
		call(c)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d, logs:\n%s", code, p.Logs())
	}
	next := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	resp := call(rlsv3.NewRateLimitServiceClient(next.Dial(t)))
	if got, want := resp.GetStatuses()[0].GetLimitRemaining(), uint32(1_000_000-101); got != want {
		t.Errorf("after the first process stopped, the next one reads %d remaining, want %d (its block of 499 999 returned but for the 99 hits it used)", got, want)
	}
}
