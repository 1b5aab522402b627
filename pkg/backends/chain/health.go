package chain

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Pinger is implemented by stores that can be probed cheaply (Redis: PING).
type Pinger interface {
	// Ping checks that the store can serve calls. It is called from the
	// chain's health-check goroutine and from Check, possibly at the same
	// time as Take and other Pings, and must return when ctx is done. A
	// non-nil error means the store cannot serve right now.
	Ping(ctx context.Context) error
}

// HealthSettings configures the active health checks. Zero values are the
// documented defaults.
//
// Every non-local backend whose store implements Pinger is probed every
// Interval, each probe going through the backend's breaker as a call does:
//   - closed: one probe; after a failure, up to ConsecutiveFailures probes in
//     a row while they fail, so a dead backend trips within one round even
//     without traffic;
//   - open: not probed;
//   - half-open: up to HalfOpenProbes probes in a row; they alone decide
//     whether the breaker closes, and traffic only returns once it has. So
//     traffic is back on a recovered backend within OpenFor + Interval.
//
// A backend that is not probed (no Pinger, or Disabled) relies on its
// breaker alone: when half-open, up to HalfOpenProbes real calls go
// through.
type HealthSettings struct {
	// Interval between two probe rounds of a backend (default 1s).
	Interval time.Duration `yaml:"interval"`
	// Timeout bounds each probe (default 100ms).
	Timeout time.Duration `yaml:"timeout"`
	// Disabled turns active health checks off: breakers then probe with
	// real traffic when half-open.
	Disabled bool `yaml:"disabled"`
}

// watch probes b every interval until ctx is done.
func (c *Chain) watch(ctx context.Context, b *backend) {
	defer c.wg.Done()
	t := time.NewTicker(c.health.Interval)
	defer t.Stop()
	for {
		c.check(ctx, b)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check runs one probe round on b (see HealthSettings).
func (c *Chain) check(ctx context.Context, b *backend) {
	switch stateOf(b.cb.State()) { // State moves an expired open breaker to half-open
	case StateClosed:
		for range c.breaker.ConsecutiveFailures {
			if c.probe(ctx, b) == nil || ctx.Err() != nil || b.currentState() != StateClosed {
				return
			}
		}
	case StateHalfOpen:
		for range c.breaker.HalfOpenProbes {
			if c.probe(ctx, b) != nil || b.currentState() != StateHalfOpen {
				return
			}
		}
	}
}

// probe pings b once through its breaker and records the result.
func (c *Chain) probe(ctx context.Context, b *backend) error {
	pctx, cancel := context.WithTimeout(ctx, c.health.Timeout)
	defer cancel()
	start := time.Now()
	var perr error
	_, err := b.cb.Execute(func() (struct{}, error) {
		perr = b.pinger.Ping(pctx)
		if perr != nil && ctx.Err() != nil {
			return struct{}{}, fmt.Errorf("%w: %w", errCallerGone, perr)
		}
		return struct{}{}, perr
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return err // not probed
	}
	lat := time.Since(start)
	b.mu.Lock()
	b.last = probeResult{at: start, latency: lat, err: perr}
	b.mu.Unlock()
	if c.hooks.Probe != nil {
		c.hooks.Probe(b.Name, lat, perr)
	}
	return err
}

// currentState returns b's breaker state, moving an expired open breaker to
// half-open. Local backends are always closed.
func (b *backend) currentState() State {
	if b.cb == nil {
		return StateClosed
	}
	return stateOf(b.cb.State())
}

// Ready reports whether the chain is ready under policy p. A backend is
// usable while its breaker is closed; a Local backend always is. With
// ReadyPrimary or ReadyAll, a replica taken out of service stops receiving
// traffic, so its non-local backends should be actively probed to come
// back.
func (c *Chain) Ready(p Readiness) bool {
	switch p {
	case ReadyAlways:
		return true
	case ReadyPrimary:
		return c.backends[0].currentState() == StateClosed
	case ReadyAll:
		for _, b := range c.backends {
			if b.currentState() != StateClosed {
				return false
			}
		}
		return true
	default:
		for _, b := range c.backends {
			if b.currentState() == StateClosed {
				return true
			}
		}
		return false
	}
}

// Status is a backend's state as the health table and /readyz show it.
type Status struct {
	Name string
	Addr string
	// State is the breaker state. Check reports StateClosed for a backend
	// that answered its probe and StateOpen for one that did not.
	State State
	// Local is set for an in-process backend.
	Local bool
	// Probed is set when Latency, Err and At come from a probe.
	Probed  bool
	At      time.Time
	Latency time.Duration
	Err     error
}

// Usable reports whether the backend can serve calls.
func (s Status) Usable() bool { return s.State == StateClosed }

// Statuses returns every backend's current state and last probe, in chain
// order.
func (c *Chain) Statuses() []Status {
	out := make([]Status, len(c.backends))
	for i, b := range c.backends {
		b.mu.Lock()
		last := b.last
		b.mu.Unlock()
		out[i] = Status{
			Name:    b.Name,
			Addr:    b.Addr,
			State:   b.currentState(),
			Local:   b.Local,
			Probed:  !last.at.IsZero(),
			At:      last.at,
			Latency: last.latency,
			Err:     last.err,
		}
	}
	return out
}
