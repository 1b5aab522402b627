package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/internal/redistest"
)

// Settings of the failover e2e tests: short enough for a test, with the
// same proportions as production (call timeout under Envoy's, open time a
// few probe intervals).
const (
	foCallTimeout = 50 * time.Millisecond
	foOpenFor     = 2 * time.Second
	foInterval    = 250 * time.Millisecond
	// foDialBackoff: once pool-size dials in a row have failed, go-redis
	// stops dialing and retries in the background once a second.
	foDialBackoff = time.Second
)

// failoverConfig is a server file with the chain [redis at addr, memory]
// (or [redis] alone when memory is false); extra is appended verbatim.
func failoverConfig(addr string, memory bool, extra string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `backends:
  - type: redis
    url: redis://%s/0
`, addr)
	if memory {
		b.WriteString("  - type: memory\n")
	}
	fmt.Fprintf(&b, `breaker:
  call_timeout: %v
  consecutive_failures: 3
  open_for: %v
  half_open_probes: 1
health_check:
  interval: %v
  timeout: 100ms
domains:
  - domain: failover
    descriptors:
      - key: client
        rate_limit: {unit: hour, requests_per_unit: 100000000}
      - key: tight
        rate_limit: {unit: hour, requests_per_unit: 5}
  - domain: open_domain
    descriptors:
      - key: client
        rate_limit: {unit: hour, requests_per_unit: 100000000}
  - domain: envoy_domain
    descriptors:
      - key: client
        rate_limit: {unit: hour, requests_per_unit: 100000000}
`, foCallTimeout, foOpenFor, foInterval)
	b.WriteString(extra)
	return b.String()
}

// startFailover starts extauthz with cfg.
func startFailover(t *testing.T, cfg string) *Process {
	t.Helper()
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", cfg)
	return Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
}

// sample is one RPC of the load.
type sample struct {
	at  time.Time
	lat time.Duration
	err error
}

// loadRun drives ShouldRateLimit at a steady rate from several clients,
// each on its own connection, each RPC with an Envoy-like deadline.
type loadRun struct {
	mu      sync.Mutex
	samples []sample
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startLoad(t *testing.T, p *Process, clients int, perClient time.Duration) *loadRun {
	t.Helper()
	l := &loadRun{stop: make(chan struct{})}
	for c := range clients {
		rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
		req := &rlsv3.RateLimitRequest{Domain: "failover", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("client", fmt.Sprint("c", c))}}
		l.wg.Go(func() {
			tick := time.NewTicker(perClient)
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				start := time.Now()
				resp, err := rls.ShouldRateLimit(ctx, req)
				lat := time.Since(start)
				cancel()
				if err == nil && resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
					err = fmt.Errorf("overall code %v, want OK", resp.GetOverallCode())
				}
				l.mu.Lock()
				l.samples = append(l.samples, sample{at: start, lat: lat, err: err})
				l.mu.Unlock()
			}
		})
	}
	t.Cleanup(l.halt)
	return l
}

func (l *loadRun) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// stats summarises the samples started in [from, to).
type loadStats struct {
	calls, failed  int
	firstErr       error
	p50, p99, maxL time.Duration
	rate           float64
}

func (s loadStats) String() string {
	return fmt.Sprintf("%d RPCs (%.0f/s), %d failed, p50 %v, p99 %v, max %v",
		s.calls, s.rate, s.failed, s.p50.Round(time.Microsecond), s.p99.Round(time.Microsecond), s.maxL.Round(time.Microsecond))
}

func (l *loadRun) stats(from, to time.Time) loadStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s loadStats
	var lats []time.Duration
	for _, x := range l.samples {
		if x.at.Before(from) || !x.at.Before(to) {
			continue
		}
		s.calls++
		lats = append(lats, x.lat)
		if x.err != nil {
			s.failed++
			if s.firstErr == nil {
				s.firstErr = x.err
			}
		}
	}
	if len(lats) == 0 {
		return s
	}
	slices.Sort(lats)
	s.p50, s.p99, s.maxL = lats[len(lats)/2], lats[len(lats)*99/100], lats[len(lats)-1]
	s.rate = float64(s.calls) / to.Sub(from).Seconds()
	return s
}

// readyWatch polls /readyz and records when its answer changed.
type readyWatch struct {
	mu      sync.Mutex
	changes []readyChange
	stop    chan struct{}
	done    chan struct{}
}

type readyChange struct {
	at    time.Time
	ready bool
}

func watchReady(t *testing.T, p *Process) *readyWatch {
	w := &readyWatch{stop: make(chan struct{}), done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second}
	go func() {
		defer close(w.done)
		last := -1
		for {
			select {
			case <-w.stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			resp, err := client.Get("http://" + p.HTTPAddr + "/readyz")
			ready := 0
			if err == nil {
				if resp.StatusCode == http.StatusOK {
					ready = 1
				}
				resp.Body.Close()
			}
			if ready != last {
				w.mu.Lock()
				w.changes = append(w.changes, readyChange{at: time.Now(), ready: ready == 1})
				w.mu.Unlock()
				last = ready
			}
		}
	}()
	t.Cleanup(w.halt)
	return w
}

func (w *readyWatch) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// firstChange returns when readiness first became ready (true) or unready
// (false) at or after t; zero if it has not.
func (w *readyWatch) firstChange(t time.Time, ready bool) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range w.changes {
		if !c.at.Before(t) && c.ready == ready {
			return c.at
		}
	}
	return time.Time{}
}

// scriptCalls returns how many script calls (EVALSHA + EVAL) srv has
// answered since it started, or -1 when it does not answer.
func scriptCalls(srv *redistest.Server) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	st, err := srv.CommandStats(ctx)
	if err != nil {
		return -1
	}
	return st["evalsha"] + st["eval"]
}

// waitUntil polls cond every 10ms until it holds or d passes, and returns
// when it first held (zero if it never did).
func waitUntil(d time.Duration, cond func() bool) time.Time {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return time.Now()
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Time{}
}

// loadDuration is the length of the steady-load tests: 20s, or 8s with
// -short.
func loadDuration() time.Duration {
	if testing.Short() {
		return 8 * time.Second
	}
	return 20 * time.Second
}
