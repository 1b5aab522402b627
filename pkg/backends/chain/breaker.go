package chain

import (
	"errors"
	"fmt"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// State is a backend's circuit-breaker state.
type State uint8

const (
	// StateClosed: the backend serves traffic. The zero value.
	StateClosed State = iota
	// StateHalfOpen: the open time is over and a bounded number of probes
	// decide whether the backend serves again.
	StateHalfOpen
	// StateOpen: the backend failed and is skipped until BreakerSettings.OpenFor
	// has passed.
	StateOpen
)

var stateNames = [...]string{"closed", "half_open", "open"}

// String returns the metric label of s: "closed", "half_open" or "open".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

func stateOf(s gobreaker.State) State {
	switch s {
	case gobreaker.StateOpen:
		return StateOpen
	case gobreaker.StateHalfOpen:
		return StateHalfOpen
	default:
		return StateClosed
	}
}

// windowBuckets is how many buckets the failure-ratio window rolls over.
const windowBuckets = 10

// BreakerSettings configures the circuit breaker and the call timeout of
// each non-local backend. Zero values are the documented defaults. A call
// that returns an error (including running out of time) is a failure,
// except a request error (limiter.IsRequestError: the backend is fine) and a
// call whose caller cancelled.
type BreakerSettings struct {
	// CallTimeout bounds each call to a non-local backend (default 10ms;
	// negative: none, the store's own timeouts apply). A call that runs out
	// of time counts as a failure and moves on to the next backend, so size
	// it below Envoy's rate-limit timeout (20ms by default), leaving room
	// for the fallback.
	CallTimeout time.Duration `yaml:"call_timeout"`
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row (default 5; at most 2^32-1).
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// FailureRatio trips the breaker once this fraction of the calls made
	// within Window failed, counted only when at least MinRequests calls were
	// made (default 0.5; negative disables ratio tripping; at most 1).
	FailureRatio float64 `yaml:"failure_ratio"`
	// MinRequests is the fewest calls within Window for FailureRatio to
	// apply (default 20).
	MinRequests int `yaml:"min_requests"`
	// Window is the rolling window of the failure ratio, counted in ten
	// buckets (default 10s).
	Window time.Duration `yaml:"window"`
	// OpenFor is how long a tripped breaker stays open before probing the
	// backend again (default 5s).
	OpenFor time.Duration `yaml:"open_for"`
	// HalfOpenProbes is how many consecutive successful probes close a
	// half-open breaker; no more calls than this go through while half-open,
	// and any failure opens it again (default 1).
	HalfOpenProbes int `yaml:"half_open_probes"`
}

// settings returns the gobreaker settings of backend name; onChange mirrors
// state changes.
func (s BreakerSettings) settings(name string, onChange func(from, to State)) gobreaker.Settings {
	return gobreaker.Settings{
		Name:         name,
		MaxRequests:  uint32(s.HalfOpenProbes), // Validate bounds the counts to uint32
		Interval:     s.Window,
		BucketPeriod: s.Window / windowBuckets,
		Timeout:      s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= uint32(s.ConsecutiveFailures) {
				return true
			}
			done := c.TotalSuccesses + c.TotalFailures // excludes calls in flight
			return s.FailureRatio > 0 && done >= uint32(s.MinRequests) &&
				float64(c.TotalFailures) >= s.FailureRatio*float64(done)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			onChange(stateOf(from), stateOf(to))
		},
		IsSuccessful: func(err error) bool {
			return err == nil || limiter.IsRequestError(err)
		},
		IsExcluded: func(err error) bool {
			return err != nil && errors.Is(err, errCallerGone)
		},
	}
}
