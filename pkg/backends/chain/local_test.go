package chain

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// localFake answers locally when local is set, and otherwise as fakeStore.
type localFake struct {
	fakeStore
	local      atomic.Bool
	localCalls atomic.Int64
}

func (f *localFake) TakeLocal(_ limiter.Mode, reqs []limiter.Request, res []limiter.Result) bool {
	f.localCalls.Add(1)
	if !f.local.Load() {
		return false
	}
	for i := range reqs {
		res[i] = limiter.Result{Allowed: true, Remaining: 7}
	}
	return true
}

// A LocalTaker's local answers skip the store's Take and the breaker; while
// the breaker is open the chain does not ask for them.
func TestLocalTaker(t *testing.T) {
	f := &localFake{}
	mem := &fakeStore{}
	c := newChain(t, Options{Backends: []Backend{{Name: "redis", Store: f}, {Name: "memory", Store: mem, Local: true}},
		Settings: Settings{Breaker: BreakerSettings{ConsecutiveFailures: 1, OpenFor: time.Hour}, HealthCheck: HealthSettings{Disabled: true}}})
	reqs := []limiter.Request{{Key: "k", Limit: limiter.Limit{Requests: 10, Period: time.Minute}, Hits: 1}}
	res := make([]limiter.Result, 1)

	f.local.Store(true)
	if err := c.Take(context.Background(), limiter.CountAll, reqs, res); err != nil || res[0].Remaining != 7 {
		t.Fatalf("Take = %v, %+v; want the local answer", err, res[0])
	}
	if f.calls.Load() != 0 {
		t.Errorf("store Take called %d times for a local answer", f.calls.Load())
	}

	f.local.Store(false)
	f.set(errors.New("down"), false)
	if err := c.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
		t.Fatalf("Take with the primary down: %v, want the memory answer", err)
	}
	if st := c.Statuses()[0].State; st != StateOpen {
		t.Fatalf("breaker %v after one failure, want open", st)
	}
	f.local.Store(true)
	asked := f.localCalls.Load()
	if err := c.Take(context.Background(), limiter.CountAll, reqs, res); err != nil || res[0].Remaining == 7 {
		t.Fatalf("Take with the breaker open = %v, %+v; want memory's answer, not a local one", err, res[0])
	}
	if f.localCalls.Load() != asked {
		t.Error("TakeLocal asked while the breaker is open")
	}
}
