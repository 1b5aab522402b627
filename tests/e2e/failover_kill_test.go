package e2e

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/redistest"
)

// TestFailoverRedisKill: under steady load, SIGKILL the redis-server, then
// restart it on the same port. No RPC may fail: the chain serves from
// memory as soon as Redis refuses connections, and goes back to Redis on
// its own once a health probe closed the breaker.
func TestFailoverRedisKill(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	p := startFailover(t, failoverConfig(srv.Addr, true, "readiness: primary\n"))
	d := loadDuration()
	start := time.Now()
	l := startLoad(t, p, 5, 10*time.Millisecond) // 5 clients x 100/s
	w := watchReady(t, p)

	time.Sleep(d / 4)
	if n := scriptCalls(srv); n <= 0 {
		t.Fatalf("before the kill: got %d script calls on redis, want traffic there", n)
	}
	killed := time.Now()
	srv.Kill()
	time.Sleep(d / 4)

	srv.Restart(t)
	restarted := time.Now()
	bound := foOpenFor + foInterval + foDialBackoff
	back := waitUntil(bound+5*time.Second, func() bool { return scriptCalls(srv) > 0 })
	if rest := time.Until(start.Add(d)); rest > 0 {
		time.Sleep(rest)
	}
	l.halt()
	w.halt()
	end := time.Now()

	all, before, outage, after := l.stats(start, end), l.stats(start, killed), l.stats(killed, restarted), l.stats(restarted, end)
	unready, ready := w.firstChange(killed, false), w.firstChange(restarted, true)
	t.Logf("whole run %v: %v", end.Sub(start).Round(time.Millisecond), all)
	t.Logf("before SIGKILL: %v", before)
	t.Logf("redis dead (%v): %v", restarted.Sub(killed).Round(time.Millisecond), outage)
	t.Logf("after restart: %v", after)
	t.Logf("breaker open (readyz 503) %v after SIGKILL; traffic back on redis %v after restart (bound open_for %v + interval %v + go-redis redial %v); readyz 200 again %v after restart",
		since(unready, killed), since(back, restarted), foOpenFor, foInterval, foDialBackoff, since(ready, restarted))

	if all.failed > 0 {
		t.Errorf("failed RPCs: got %d of %d, want 0; first: %v", all.failed, all.calls, all.firstErr)
	}
	if all.rate < 350 {
		t.Errorf("load: got %.0f RPCs/s, want about 500 (machine too busy?)", all.rate)
	}
	if unready.IsZero() || unready.Sub(killed) > time.Second {
		t.Errorf("breaker open: got %v after SIGKILL, want within 1s (detection under load)", since(unready, killed))
	}
	if back.IsZero() || back.Sub(restarted) > bound+500*time.Millisecond {
		t.Errorf("traffic back on redis: got %v after restart, want within %v (+500ms slack)", since(back, restarted), bound)
	}
}

// since formats t-from, or "never" for a zero t.
func since(t, from time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.Sub(from).Round(time.Millisecond).String()
}
