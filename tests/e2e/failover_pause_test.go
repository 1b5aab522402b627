package e2e

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/redistest"
)

// TestFailoverRedisPause: under steady load, SIGSTOP the redis-server (a
// hung server: connections stay open, nothing answers). Calls time out
// after the call timeout, the breaker opens, and latency stays bounded by
// the timeout; after SIGCONT traffic returns to Redis.
func TestFailoverRedisPause(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	p := startFailover(t, failoverConfig(srv.Addr, true, "readiness: primary\n"))
	d := loadDuration()
	start := time.Now()
	l := startLoad(t, p, 5, 10*time.Millisecond) // 5 clients x 100/s
	w := watchReady(t, p)

	time.Sleep(d / 4)
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := time.Now()
	time.Sleep(d / 2)
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	resumed := time.Now()
	// Commands queued while paused run at once on SIGCONT; count from after
	// that backlog.
	time.Sleep(100 * time.Millisecond)
	base := scriptCalls(srv)
	bound := foOpenFor + foInterval
	back := waitUntil(bound+5*time.Second, func() bool { return scriptCalls(srv) > base })
	if rest := time.Until(start.Add(d)); rest > 0 {
		time.Sleep(rest)
	}
	l.halt()
	w.halt()
	end := time.Now()

	all, hung := l.stats(start, end), l.stats(paused, resumed)
	unready := w.firstChange(paused, false)
	t.Logf("whole run %v: %v", end.Sub(start).Round(time.Millisecond), all)
	t.Logf("redis paused (%v): %v", resumed.Sub(paused).Round(time.Millisecond), hung)
	t.Logf("call timeout %v; breaker open (readyz 503) %v after SIGSTOP; traffic back on redis %v after SIGCONT (bound open_for %v + interval %v)",
		foCallTimeout, since(unready, paused), since(back, resumed), foOpenFor, foInterval)

	if all.failed > 0 {
		t.Errorf("failed RPCs: got %d of %d, want 0; first: %v", all.failed, all.calls, all.firstErr)
	}
	if hung.p99 > foCallTimeout {
		t.Errorf("p99 while paused: got %v, want at most the call timeout %v", hung.p99, foCallTimeout)
	}
	if slack := 150 * time.Millisecond; hung.maxL > foCallTimeout+slack {
		t.Errorf("max latency while paused: got %v, want at most the call timeout %v (+%v scheduling slack)", hung.maxL, foCallTimeout, slack)
	}
	if unready.IsZero() || unready.Sub(paused) > time.Second {
		t.Errorf("breaker open: got %v after SIGSTOP, want within 1s", since(unready, paused))
	}
	if back.IsZero() || back.Sub(resumed) > bound+100*time.Millisecond+500*time.Millisecond {
		t.Errorf("traffic back on redis: got %v after SIGCONT, want within %v (+600ms slack)", since(back, resumed), bound)
	}
}
