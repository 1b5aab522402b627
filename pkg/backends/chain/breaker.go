package chain

import (
	"errors"
	"fmt"
	"time"

	"github.com/sony/gobreaker/v2"
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

// Defaults of BreakerSettings.
const (
	DefaultConsecutiveFailures = 5
	DefaultFailureRatio        = 0.5
	DefaultMinRequests         = 20
	DefaultWindow              = 10 * time.Second
	DefaultOpenFor             = 5 * time.Second
	DefaultHalfOpenProbes      = 1
)

// windowBuckets is how many buckets the failure-ratio window rolls over.
const windowBuckets = 10

// BreakerSettings configures the circuit breaker of each non-local backend.
// Zero values are the documented defaults. A call that returns an error
// (including running out of time) is a failure, except a request error
// (limiter.ErrInvalidRequest, ErrInvalidLimit, ErrUnknownAlgorithm: the
// backend is fine) and a call whose caller cancelled.
type BreakerSettings struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row (default 5).
	ConsecutiveFailures uint32
	// FailureRatio trips the breaker once this fraction of the calls made
	// within Window failed, counted only when at least MinRequests calls were
	// made (default 0.5; negative disables ratio tripping; at most 1).
	FailureRatio float64
	// MinRequests is the fewest calls within Window for FailureRatio to
	// apply (default 20).
	MinRequests uint32
	// Window is the rolling window of the failure ratio, counted in ten
	// buckets (default 10s).
	Window time.Duration
	// OpenFor is how long a tripped breaker stays open before probing the
	// backend again (default 5s).
	OpenFor time.Duration
	// HalfOpenProbes is how many consecutive successful probes close a
	// half-open breaker; no more calls than this go through while half-open,
	// and any failure opens it again (default 1).
	HalfOpenProbes uint32
}

func (s BreakerSettings) withDefaults() (BreakerSettings, error) {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = DefaultConsecutiveFailures
	}
	if s.FailureRatio == 0 {
		s.FailureRatio = DefaultFailureRatio
	}
	if s.MinRequests == 0 {
		s.MinRequests = DefaultMinRequests
	}
	if s.Window == 0 {
		s.Window = DefaultWindow
	}
	if s.OpenFor == 0 {
		s.OpenFor = DefaultOpenFor
	}
	if s.HalfOpenProbes == 0 {
		s.HalfOpenProbes = DefaultHalfOpenProbes
	}
	var errs []error
	if s.FailureRatio > 1 {
		errs = append(errs, fmt.Errorf("failure_ratio %v is above 1", s.FailureRatio))
	}
	if s.Window < 0 {
		errs = append(errs, fmt.Errorf("window %v is negative", s.Window))
	}
	if s.OpenFor < 0 {
		errs = append(errs, fmt.Errorf("open_for %v is negative", s.OpenFor))
	}
	return s, errors.Join(errs...)
}

// settings returns the gobreaker settings of backend name; onChange mirrors
// state changes.
func (s BreakerSettings) settings(name string, onChange func(from, to State)) gobreaker.Settings {
	return gobreaker.Settings{
		Name:         name,
		MaxRequests:  s.HalfOpenProbes,
		Interval:     s.Window,
		BucketPeriod: s.Window / windowBuckets,
		Timeout:      s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures >= s.ConsecutiveFailures {
				return true
			}
			done := c.TotalSuccesses + c.TotalFailures // excludes calls in flight
			return s.FailureRatio > 0 && done >= s.MinRequests &&
				float64(c.TotalFailures) >= s.FailureRatio*float64(done)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			onChange(stateOf(from), stateOf(to))
		},
		IsSuccessful: func(err error) bool {
			return err == nil || isRequestError(err)
		},
		IsExcluded: func(err error) bool {
			return err != nil && errors.Is(err, errCallerGone)
		},
	}
}
