package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/internal/redistest"
)

// Distributed correctness: three extauthz processes share one Redis (or one
// Redis Cluster); 50 concurrent clients spread over the three hammer one
// descriptor limited to distLimit per minute.
const (
	distLimit     = 100
	distBurst     = 20
	distClients   = 50
	distPerClient = 12 // 600 calls, 6x the limit
	distProcesses = 3
	// dist_refill: a token bucket refilled every 10ms, hammered for
	// distRefillFor, so that refill across processes is exercised too.
	distRefillRate = 100
	distRefillFor  = 1500 * time.Millisecond
)

// distConfig is a server file whose backend is the given redis settings
// (already indented as a backends entry) and which limits client=hammer per
// minute in three domains, one per algorithm.
func distConfig(redis string) string {
	// The call timeout is generous: this test is about counts, and the test
	// machine runs 3 servers, Redis and 50 clients on few cores. Traffic
	// insight is off: its fleet merge runs its own script every
	// flush_interval, which would blur the store's command counts.
	return fmt.Sprintf(`backends:
  - type: redis
%s
breaker:
  call_timeout: 2s
insight: {disabled: true}
domains:
  - domain: dist_fixed
    descriptors:
      - key: client
        rate_limit: {unit: minute, requests_per_unit: %[2]d, algorithm: fixed_window}
  - domain: dist_sliding
    descriptors:
      - key: client
        rate_limit: {unit: minute, requests_per_unit: %[2]d, algorithm: sliding_window}
  - domain: dist_bucket
    descriptors:
      - key: client
        rate_limit: {unit: minute, requests_per_unit: %[2]d, algorithm: token_bucket, burst: %[3]d}
  - domain: dist_refill
    descriptors:
      - key: client
        rate_limit: {unit: second, requests_per_unit: %[4]d, algorithm: token_bucket, burst: %[3]d}
`, redis, distLimit, distBurst, distRefillRate)
}

// commandStatser is a standalone server or a cluster.
type commandStatser interface {
	CommandStats(ctx context.Context) (map[string]int64, error)
}

func TestRedisDistributed(t *testing.T) {
	t.Run("standalone", func(t *testing.T) { // auto pipelining by default
		srv := redistest.Start(t, redistest.Options{})
		runDistributed(t, distConfig("    url: redis://"+srv.Addr+"/0"), srv)
	})
	t.Run("standalone_no_auto_pipeline", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		runDistributed(t, distConfig("    url: redis://"+srv.Addr+"/0\n    auto_pipeline: false"), srv)
	})
	t.Run("cluster", func(t *testing.T) {
		c := redistest.StartCluster(t)
		runDistributed(t, distConfig("    cluster: {addrs: ["+strings.Join(c.Addrs(), ", ")+"]}"), c)
	})
}

func runDistributed(t *testing.T, cfg string, redis commandStatser) {
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", cfg)
	procs := make([]*Process, distProcesses)
	clients := make([]rlsv3.RateLimitServiceClient, distProcesses)
	for i := range procs {
		procs[i] = Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
		clients[i] = rlsv3.NewRateLimitServiceClient(procs[i].Dial(t))
	}
	ctx := context.Background()
	// Calls on other descriptors load the script on every node (keys spread
	// over the cluster's slots) and open connections, so that the measured
	// calls are steady state.
	for _, c := range clients {
		for _, d := range []string{"dist_fixed", "dist_sliding", "dist_bucket", "dist_refill"} {
			for j := range 10 {
				if _, err := c.ShouldRateLimit(ctx, distRequest(d, fmt.Sprintf("warmup-%d", j))); err != nil {
					t.Fatalf("warm-up call: %v", err)
				}
			}
		}
	}

	for _, tc := range []struct {
		domain string
		// hammerFor, when set, makes each client call until then instead
		// of distPerClient times.
		hammerFor time.Duration
		// check judges the number of admitted calls, given how long the
		// hammering took.
		check func(admitted int64, took time.Duration) error
	}{
		{domain: "dist_fixed", check: func(admitted int64, _ time.Duration) error {
			if admitted != distLimit {
				return fmt.Errorf("admitted %d, want exactly %d", admitted, distLimit)
			}
			return nil
		}},
		{domain: "dist_sliding", check: func(admitted int64, _ time.Duration) error {
			// A fresh counter inside one window: the estimate is the count.
			if admitted != distLimit {
				return fmt.Errorf("admitted %d, want exactly %d (never more)", admitted, distLimit)
			}
			return nil
		}},
		{domain: "dist_bucket", check: func(admitted int64, took time.Duration) error {
			// A full bucket of distBurst, refilled at one token per T.
			emission := time.Minute / distLimit
			most := distBurst + int64(took/emission) + 1
			if admitted < distBurst || admitted > most {
				return fmt.Errorf("admitted %d in %v, want between the burst %d and %d (burst + refill)", admitted, took, distBurst, most)
			}
			return nil
		}},
		{domain: "dist_refill", hammerFor: distRefillFor, check: func(admitted int64, took time.Duration) error {
			emission := time.Second / distRefillRate
			most := distBurst + int64(took/emission) + 1
			// The clients keep the bucket empty: nearly every token is used.
			least := distBurst + int64(distRefillFor/emission)*3/4
			if admitted < least || admitted > most {
				return fmt.Errorf("admitted %d in %v, want between %d and %d (burst + refill, never more)", admitted, took, least, most)
			}
			return nil
		}},
	} {
		t.Run(tc.domain, func(t *testing.T) {
			awayFromWindowEdge(time.Minute, 10*time.Second)
			before, err := redis.CommandStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var admitted, refused, failed atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			start := time.Now()
			for i := range distClients {
				c := clients[i%distProcesses]
				wg.Go(func() {
					for n := 0; ; n++ {
						if tc.hammerFor > 0 && time.Since(start) >= tc.hammerFor || tc.hammerFor == 0 && n == distPerClient {
							return
						}
						cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
						resp, err := c.ShouldRateLimit(cctx, distRequest(tc.domain, "hammer"))
						cancel()
						switch {
						case err != nil:
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err.Error())
						case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
							admitted.Add(1)
						case resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT:
							refused.Add(1)
						default:
							failed.Add(1)
							firstErr.CompareAndSwap(nil, "overall code "+resp.GetOverallCode().String())
						}
					}
				})
			}
			wg.Wait()
			took := time.Since(start)
			after, err := redis.CommandStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n := failed.Load(); n > 0 {
				t.Fatalf("%d calls failed, first: %v", n, firstErr.Load())
			}
			total := admitted.Load() + refused.Load()
			if tc.hammerFor == 0 && total != distClients*distPerClient {
				t.Fatalf("answered %d calls, want %d", total, distClients*distPerClient)
			}
			if err := tc.check(admitted.Load(), took); err != nil {
				t.Error(err)
			}
			// One round trip per call, each call's request decided once: a
			// batch's calls may share an EVALSHA (the pipeline merges them;
			// in Cluster mode each call has its own), but each request's
			// script body reads its counter exactly once (one GET per call:
			// one descriptor each), and nothing is sent again (no EVAL).
			evalsha := after["evalsha"] - before["evalsha"]
			gets := after["get"] - before["get"]
			if gets != total || evalsha < 1 || evalsha > total || after["eval"] != before["eval"] {
				t.Errorf("Redis: %d GET in %d EVALSHA and %d EVAL for %d calls, want one GET per call in at most one EVALSHA each, no EVAL",
					gets, evalsha, after["eval"]-before["eval"], total)
			}
			t.Logf("%s: %d admitted, %d refused of %d calls from %d clients over %d processes in %v; %.2f EVALSHA per call",
				tc.domain, admitted.Load(), refused.Load(), total, distClients, distProcesses, took.Round(time.Millisecond), float64(evalsha)/float64(total))
		})
	}
}

func distRequest(domain, client string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{
		Domain: domain,
		Descriptors: []*ratelimitv3.RateLimitDescriptor{{
			Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "client", Value: client}},
		}},
		HitsAddend: 1,
	}
}

// awayFromWindowEdge sleeps, if need be, until the current window of period
// (aligned to the epoch, as the counters are) has at least margin left.
func awayFromWindowEdge(period, margin time.Duration) {
	left := period - time.Duration(time.Now().UnixNano()%int64(period))
	if left < margin {
		time.Sleep(left + 100*time.Millisecond)
	}
}
