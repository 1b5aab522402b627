package chain

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// fakeStore is a limiter.Store whose behaviour the test sets: it fails with
// err, or blocks until ctx is done (hang), or admits everything.
type fakeStore struct {
	mu       sync.Mutex
	err      error
	hang     bool
	block    chan struct{} // when non-nil, Take waits for it (or ctx)
	lastReqs []limiter.Request
	first    time.Time // time of the first Take since reset

	calls atomic.Int64
}

func (f *fakeStore) set(err error, hang bool) {
	f.mu.Lock()
	f.err, f.hang = err, hang
	f.mu.Unlock()
}

func (f *fakeStore) resetFirst() {
	f.mu.Lock()
	f.first = time.Time{}
	f.mu.Unlock()
}

func (f *fakeStore) firstTake() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.first
}

func (f *fakeStore) reqs() []limiter.Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastReqs
}

func (f *fakeStore) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	f.calls.Add(1)
	f.mu.Lock()
	if f.first.IsZero() {
		f.first = time.Now()
	}
	f.lastReqs = append(f.lastReqs[:0], reqs...)
	err, hang, block := f.err, f.hang, f.block
	f.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if hang {
		<-ctx.Done()
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	for i, r := range reqs {
		c := r.Limit.Capacity()
		res[i] = limiter.Result{Allowed: true, Limit: c, Remaining: c - r.Hits}
	}
	return nil
}

// pingStore is a fakeStore that also implements Pinger.
type pingStore struct {
	fakeStore
	pingErr  atomic.Pointer[error]
	pingHang atomic.Bool
	pings    atomic.Int64
}

func (p *pingStore) setPing(err error, hang bool) {
	p.pingErr.Store(&err)
	p.pingHang.Store(hang)
}

func (p *pingStore) Ping(ctx context.Context) error {
	p.pings.Add(1)
	if p.pingHang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if e := p.pingErr.Load(); e != nil {
		return *e
	}
	return nil
}

var errDown = errors.New("connection refused")

// events records hook calls.
type events struct {
	mu        sync.Mutex
	states    []string // "name:from->to"
	closedAt  time.Time
	openedAt  time.Time
	failovers map[string]int // "from->to:reason"
	probes    int
	probeErrs int
}

func (e *events) hooks() Hooks {
	return Hooks{
		StateChange: func(name string, from, to State) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.states = append(e.states, name+":"+from.String()+"->"+to.String())
			switch to {
			case StateClosed:
				e.closedAt = time.Now()
			case StateOpen:
				e.openedAt = time.Now()
			}
		},
		Failover: func(from, to string, why Reason) {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.failovers == nil {
				e.failovers = map[string]int{}
			}
			e.failovers[from+"->"+to+":"+why.String()]++
		},
		Probe: func(_ string, _ time.Duration, err error) {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.probes++
			if err != nil {
				e.probeErrs++
			}
		},
	}
}

func (e *events) stateLog() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.states...)
}

func (e *events) failover(k string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failovers[k]
}

func (e *events) times() (opened, closed time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.openedAt, e.closedAt
}

// newChain builds a chain and closes it at the end of the test.
func newChain(t *testing.T, opts Options) *Chain {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > d {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start)
}

var testLimit = limiter.Limit{Requests: 100, Period: time.Minute}

func take(t *testing.T, c *Chain) error {
	t.Helper()
	reqs := []limiter.Request{{Key: "k", Limit: testLimit, Hits: 1}}
	res := make([]limiter.Result, 1)
	return c.Take(context.Background(), limiter.CountAll, reqs, res)
}
