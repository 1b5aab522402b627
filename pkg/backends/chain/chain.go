// Package chain is the failover limiter.Store: an ordered list of backends,
// each guarded by a circuit breaker and watched by active health checks, that
// serves every call from the first backend able to answer.
package chain

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// ErrUnavailable is returned by Take when no backend of the chain could
// decide. The returned error wraps it and the last backend's error; the
// configured failure mode then decides the answer (see Settings.FailureMode).
var ErrUnavailable = errors.New("chain: no backend available")

// errCallerGone marks a backend error caused by the caller cancelling its
// context; the breaker neither counts it as a failure nor as a success.
var errCallerGone = errors.New("caller cancelled")

// LocalTaker is implemented by remote stores that can answer some calls
// from local state without I/O (lease.Store: hits admitted from blocks of
// quota already counted by the backend).
type LocalTaker interface {
	// TakeLocal answers the whole call from local state and reports true,
	// or reports false having changed no state (res may have been
	// written: the call then goes on as usual). It never blocks on I/O. The
	// chain calls it, while the backend's breaker is closed, before the
	// breaker and the call timeout, which a local answer does not need: it
	// neither succeeds nor fails for the breaker.
	TakeLocal(mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) bool
}

// callBounder is implemented by stores that bound their own calls
// (redisstore.Store through lease.Store, with its pipeline): given the call
// timeout once, they end a call that outlasts it as a context deadline
// would, so the chain sets none per call (about 1 µs and 4 allocations).
// BoundCalls reports whether the store does.
type callBounder interface {
	BoundCalls(d time.Duration) bool
}

// Backend is one entry of the chain.
type Backend struct {
	// Name identifies the backend in metrics, logs and the health table,
	// e.g. "redis" or "memory". Names are unique and non-empty.
	Name string
	// Addr is shown by the health table (e.g. "127.0.0.1:6379"); may be
	// empty.
	Addr string
	// Store serves the calls. When it implements Pinger and health checks
	// are enabled, it is probed actively.
	Store limiter.Store
	// Local marks an in-process store (memory) that cannot be unavailable:
	// its calls bypass the breaker and the call timeout (so they take no
	// lock and allocate nothing here), it is never probed, and it is always
	// usable. A Local store's errors still move the call on.
	Local bool
	// BackendSettings holds FairShare (not allowed on the first backend, nor
	// on a non-local one).
	BackendSettings
}

// Options configures a Chain. Zero values are the documented defaults.
type Options struct {
	// Backends is the ordered chain; at least one.
	Backends []Backend
	// Settings are the breaker, call timeout, health check and replicas
	// settings (FailureMode and Readiness are the caller's to apply).
	Settings Settings
	// Hooks receive events for metrics and logs.
	Hooks Hooks
}

// Reason says why a call moved on to the next backend.
type Reason uint8

const (
	// ReasonOpen: the backend's breaker was not closed, so it was skipped
	// without being called.
	ReasonOpen Reason = iota
	// ReasonTimeout: the call ran out of time (CallTimeout or the caller's
	// deadline).
	ReasonTimeout
	// ReasonError: the call failed otherwise.
	ReasonError
)

var reasonNames = [...]string{"open", "timeout", "error"}

// String returns the metric label of r: "open", "timeout" or "error".
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Hooks are callbacks for metrics and logs; nil hooks are skipped. They are
// called from many goroutines at once, must be quick, must not block, and
// must not call back into the Chain.
type Hooks struct {
	// StateChange is called when a backend's breaker changes state. It runs
	// with the breaker's lock held.
	StateChange func(backend string, from, to State)
	// Failover is called when a call moves on from backend from to the next
	// backend to. It runs on the request path while the chain is degraded.
	Failover func(from, to string, why Reason)
	// Probe is called after each active health probe with its latency and
	// result (nil: healthy).
	Probe func(backend string, latency time.Duration, err error)
}

// Chain is a limiter.Store that serves each call from the first usable
// backend. It is safe for concurrent use; Close stops its health checks.
type Chain struct {
	backends []*backend
	replicas int64
	health   HealthSettings
	breaker  BreakerSettings
	hooks    Hooks

	stop      context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var _ limiter.Store = (*Chain)(nil)

// backend is a Backend with its runtime state.
type backend struct {
	Backend
	cb      *gobreaker.CircuitBreaker[struct{}] // nil when Local
	pinger  Pinger                              // nil when not actively probed
	local   LocalTaker                          // nil when the store has no local answers
	timeout time.Duration                       // 0: none
	bounded bool                                // the store bounds its calls by timeout itself
	// state mirrors the breaker's state (a State), updated by the breaker's
	// OnStateChange, so that the request path of an actively probed backend
	// can skip it without taking the breaker's lock.
	state atomic.Uint32

	mu   sync.Mutex // guards last
	last probeResult
}

type probeResult struct {
	at      time.Time
	latency time.Duration
	err     error
}

// New validates opts and returns a Chain, whose health checks run until
// Close. The chain does not own the backends' stores: close them after the
// chain.
func New(opts Options) (*Chain, error) {
	if len(opts.Backends) == 0 {
		return nil, errors.New("chain: no backends")
	}
	st := opts.Settings
	if err := st.Validate(); err != nil {
		return nil, fmt.Errorf("chain: %w", err)
	}
	c := &Chain{
		replicas: int64(st.Replicas),
		health:   st.HealthCheck,
		breaker:  st.Breaker,
		hooks:    opts.Hooks,
	}
	seen := make(map[string]bool, len(opts.Backends))
	var errs []error
	for i, o := range opts.Backends {
		switch {
		case o.Name == "":
			errs = append(errs, fmt.Errorf("chain: backend %d: empty name", i))
		case seen[o.Name]:
			errs = append(errs, fmt.Errorf("chain: backend %d: duplicate name %q", i, o.Name))
		}
		seen[o.Name] = true
		if o.Store == nil {
			errs = append(errs, fmt.Errorf("chain: backend %q: nil store", o.Name))
		}
		if err := o.BackendSettings.Validate(i, o.Name, o.Local); err != nil {
			errs = append(errs, fmt.Errorf("chain: backend %q: %w", o.Name, err))
		}
		c.backends = append(c.backends, c.newBackend(o))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	ctx, cancel := context.WithCancel(context.Background())
	c.stop = cancel
	for _, b := range c.backends {
		if b.pinger != nil {
			c.wg.Add(1)
			go c.watch(ctx, b)
		}
	}
	return c, nil
}

func (c *Chain) newBackend(o Backend) *backend {
	b := &backend{Backend: o}
	if o.Local {
		return b
	}
	if c.breaker.CallTimeout > 0 {
		b.timeout = c.breaker.CallTimeout
	}
	if o.CallTimeout != 0 {
		b.timeout = max(o.CallTimeout, 0)
	}
	if cb, ok := o.Store.(callBounder); ok && b.timeout > 0 {
		b.bounded = cb.BoundCalls(b.timeout)
	}
	if p, ok := o.Store.(Pinger); ok && !c.health.Disabled {
		b.pinger = p
	}
	if l, ok := o.Store.(LocalTaker); ok {
		b.local = l
	}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](c.breaker.settings(o.Name, func(from, to State) {
		b.state.Store(uint32(to))
		if c.hooks.StateChange != nil {
			c.hooks.StateChange(o.Name, from, to)
		}
	}))
	return b
}

// Backends returns the chain's backends, in order, as they were configured
// (for a one-off Check of each, as the health command does).
func (c *Chain) Backends() []Backend {
	out := make([]Backend, len(c.backends))
	for i, b := range c.backends {
		out[i] = b.Backend
	}
	return out
}

// Close stops the health checks and waits for them. It does not close the
// backends' stores. It is safe to call more than once.
func (c *Chain) Close() error {
	c.closeOnce.Do(func() {
		if c.stop != nil {
			c.stop()
		}
		c.wg.Wait()
	})
	return nil
}

// Take implements limiter.Store: it tries the backends in order, skipping
// those whose breaker is not closed, and returns the first answer. A call
// that fails or times out on one backend moves on to the next within the
// same Take. When no backend answers, the error wraps ErrUnavailable and the
// last backend's error. A request error (limiter.ErrInvalidRequest,
// ErrInvalidLimit or ErrUnknownAlgorithm) is returned as is: it does not
// count against the backend and does not move on.
func (c *Chain) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	var (
		last     error
		lastName string
	)
	for i, b := range c.backends {
		err := c.call(ctx, b, i > 0 && b.FairShare, mode, reqs, res)
		if err == nil {
			return nil
		}
		if limiter.IsRequestError(err) {
			return err
		}
		last, lastName = err, b.Name
		if ctx.Err() != nil {
			// The caller has gone: no answer can reach it.
			break
		}
		if i+1 < len(c.backends) && c.hooks.Failover != nil {
			c.hooks.Failover(b.Name, c.backends[i+1].Name, reasonOf(err))
		}
	}
	return fmt.Errorf("%w: backend %s: %w", ErrUnavailable, lastName, last)
}

// call runs one Take on b through its breaker.
func (c *Chain) call(ctx context.Context, b *backend, share bool, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	if b.pinger != nil && State(b.state.Load()) != StateClosed {
		// Actively probed: traffic only returns once probes closed the
		// breaker.
		return gobreaker.ErrOpenState
	}
	if share {
		reqs = c.share(reqs)
	}
	if b.local != nil && State(b.state.Load()) == StateClosed && b.local.TakeLocal(mode, reqs, res) {
		return nil
	}
	if b.cb == nil {
		return b.Store.Take(ctx, mode, reqs, res)
	}
	_, err := b.cb.Execute(func() (struct{}, error) {
		return struct{}{}, b.take(ctx, mode, reqs, res)
	})
	return err
}

// take calls b's store with the call timeout.
func (b *backend) take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	var err error
	if b.timeout > 0 && !b.bounded && !deadlineWithin(ctx, b.timeout) {
		// WithTimeout costs about 1µs and 4 allocations per call (a timer
		// context). It is what bounds a hung backend whose client timeouts
		// are longer, so that the call still fails over within Envoy's
		// deadline; a store that can bound its calls more cheaply does
		// (callBounder).
		tctx, cancel := context.WithTimeout(ctx, b.timeout)
		err = b.Store.Take(tctx, mode, reqs, res)
		cancel()
	} else {
		err = b.Store.Take(ctx, mode, reqs, res)
	}
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%w: %w", errCallerGone, err)
	}
	return err
}

// deadlineWithin reports whether ctx already ends within d.
func deadlineWithin(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return ok && time.Until(dl) <= d
}

// share returns a copy of reqs with fair-share limits. It allocates; it only
// runs while a fair-share backend stands in for a shared one.
func (c *Chain) share(reqs []limiter.Request) []limiter.Request {
	if c.replicas <= 1 {
		return reqs
	}
	out := make([]limiter.Request, len(reqs))
	for i, r := range reqs {
		r.Limit = FairShare(r.Limit, c.replicas)
		out[i] = r
	}
	return out
}

// FairShare returns l with its Requests (and Burst, when set) divided by
// replicas, rounded down so that the replicas together never admit more
// than l; a positive value never drops below 1, so that a limit smaller than
// the replica count still admits one hit per replica rather than none
// (Requests == 0 stays 0: it refuses everything). For a token bucket this
// divides the refill rate and the capacity. replicas <= 1 returns l.
func FairShare(l limiter.Limit, replicas int64) limiter.Limit {
	if replicas <= 1 {
		return l
	}
	l.Requests = shareOf(l.Requests, replicas)
	l.Burst = shareOf(l.Burst, replicas)
	return l
}

func shareOf(n, replicas int64) int64 {
	if n <= 0 {
		return n
	}
	return max(n/replicas, 1)
}

func reasonOf(err error) Reason {
	var t interface{ Timeout() bool }
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return ReasonOpen
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &t) && t.Timeout():
		return ReasonTimeout
	default:
		return ReasonError
	}
}
