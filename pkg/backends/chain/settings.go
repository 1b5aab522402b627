package chain

import (
	"cmp"
	"errors"
	"maps"
	"math"
	"slices"
	"time"

	"github.com/extauthz/extauthz/pkg/field"
)

// Settings are the failover settings of the server file: how each backend
// of the chain is guarded, how it is health-checked, what readiness means,
// and what a request gets when no backend can decide. Their keys are
// top-level in extauthz.yaml:
//
//	failure_mode: envoy            # open | closed | envoy
//	domain_failure_modes:          # per-domain override of failure_mode
//	  payments: closed
//	breaker:
//	  call_timeout: 10ms           # per backend call; -1ms: none
//	  consecutive_failures: 5
//	  failure_ratio: 0.5           # over window, once min_requests calls; negative: off
//	  min_requests: 20
//	  window: 10s
//	  open_for: 5s
//	  half_open_probes: 1
//	health_check:
//	  interval: 1s
//	  timeout: 100ms
//	  disabled: false
//	readiness: any                 # any | primary | all | always
//	replicas: 1                    # divisor of fair_share limits
//
// Zero values are the documented defaults; Validate fills them in.
type Settings struct {
	// FailureMode answers requests no backend can decide (default
	// FailEnvoy). The server applies it; the chain only reports
	// ErrUnavailable.
	FailureMode FailureMode `yaml:"failure_mode"`
	// DomainFailureModes overrides FailureMode for the domains it names.
	DomainFailureModes map[string]FailureMode `yaml:"domain_failure_modes"`
	// Breaker configures every non-local backend's circuit breaker and
	// call timeout.
	Breaker BreakerSettings `yaml:"breaker"`
	// HealthCheck configures the active health checks.
	HealthCheck HealthSettings `yaml:"health_check"`
	// Readiness is the /readyz and gRPC health policy (default ReadyAny).
	Readiness Readiness `yaml:"readiness"`
	// Replicas is the number of extauthz replicas that share the first
	// backend's counters: the divisor of fair-share limits (default 1).
	Replicas int `yaml:"replicas"`
}

// BackendSettings are the failover settings of one backends entry.
type BackendSettings struct {
	// FairShare divides every limit by Settings.Replicas while this backend
	// serves, which is only ever because every backend before it is
	// unavailable (see FairShare for the rounding). Only a local (memory)
	// backend that follows another one can have it.
	FairShare bool `yaml:"fair_share"`
	// CallTimeout, when set, replaces Settings.Breaker.CallTimeout for this
	// backend's calls (negative: none). A database such as PostgreSQL may
	// need more than the 10ms that suits Redis; a local backend has none.
	CallTimeout time.Duration `yaml:"call_timeout"`
}

// Defaults of Settings.
const (
	DefaultReplicas            = 1
	DefaultCallTimeout         = 10 * time.Millisecond
	DefaultConsecutiveFailures = 5
	DefaultFailureRatio        = 0.5
	DefaultMinRequests         = 20
	DefaultWindow              = 10 * time.Second
	DefaultOpenFor             = 5 * time.Second
	DefaultHalfOpenProbes      = 1
	DefaultHealthInterval      = time.Second
	DefaultHealthTimeout       = 100 * time.Millisecond
)

// Validate fills in the defaults of s's zero values and returns every
// problem as a *field.Error whose path is relative to s (e.g.
// "breaker.failure_ratio").
func (s *Settings) Validate() error {
	s.setDefaults()
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, field.Errorf(path, format, args...))
	}
	for _, d := range slices.Sorted(maps.Keys(s.DomainFailureModes)) {
		if d == "" {
			add("domain_failure_modes", "empty domain name")
		}
		if m := s.DomainFailureModes[d]; !m.valid() {
			add("domain_failure_modes."+d, "unknown failure mode %d", uint8(m))
		}
	}
	if !s.FailureMode.valid() {
		add("failure_mode", "unknown failure mode %d", uint8(s.FailureMode))
	}
	if !s.Readiness.valid() {
		add("readiness", "unknown readiness %d", uint8(s.Readiness))
	}
	if s.Replicas < 0 {
		add("replicas", "%d is negative: want the number of replicas sharing the first backend", s.Replicas)
	}
	errs = append(errs, field.Wrap("breaker", s.Breaker.validate()), field.Wrap("health_check", s.HealthCheck.validate()))
	return errors.Join(errs...)
}

func (s *Settings) setDefaults() {
	s.Replicas = cmp.Or(s.Replicas, DefaultReplicas)
	b := &s.Breaker
	b.CallTimeout = cmp.Or(b.CallTimeout, DefaultCallTimeout)
	b.ConsecutiveFailures = cmp.Or(b.ConsecutiveFailures, DefaultConsecutiveFailures)
	b.FailureRatio = cmp.Or(b.FailureRatio, DefaultFailureRatio)
	b.MinRequests = cmp.Or(b.MinRequests, DefaultMinRequests)
	b.Window = cmp.Or(b.Window, DefaultWindow)
	b.OpenFor = cmp.Or(b.OpenFor, DefaultOpenFor)
	b.HalfOpenProbes = cmp.Or(b.HalfOpenProbes, DefaultHalfOpenProbes)
	s.HealthCheck.Interval = cmp.Or(s.HealthCheck.Interval, DefaultHealthInterval)
	s.HealthCheck.Timeout = cmp.Or(s.HealthCheck.Timeout, DefaultHealthTimeout)
}

// validate checks b, whose defaults are filled in.
func (b BreakerSettings) validate() error {
	var errs []error
	for _, n := range []struct {
		path string
		v    int
	}{
		{"consecutive_failures", b.ConsecutiveFailures},
		{"min_requests", b.MinRequests},
		{"half_open_probes", b.HalfOpenProbes},
	} {
		if n.v < 0 || n.v > math.MaxUint32 {
			errs = append(errs, field.Errorf(n.path, "%d is out of range: want 0 (default) to %d", n.v, uint32(math.MaxUint32)))
		}
	}
	if math.IsNaN(b.FailureRatio) || b.FailureRatio > 1 {
		errs = append(errs, field.Errorf("failure_ratio", "%v is above 1: want a fraction of calls, e.g. 0.5 (negative: off)", b.FailureRatio))
	}
	errs = append(errs, negative("window", b.Window), negative("open_for", b.OpenFor))
	return errors.Join(errs...)
}

// validate checks h, whose defaults are filled in.
func (h HealthSettings) validate() error {
	return errors.Join(negative("interval", h.Interval), negative("timeout", h.Timeout))
}

func negative(path string, d time.Duration) error {
	if d < 0 {
		return field.Errorf(path, "%v is negative: want a duration such as 5s (0: default)", d)
	}
	return nil
}

// Validate checks the settings of the i-th backend of the chain, of type
// typ; local is set for an in-process (memory) backend. Paths are relative
// to the backend entry.
func (s BackendSettings) Validate(i int, typ string, local bool) error {
	if s.CallTimeout != 0 && local {
		return field.Errorf("call_timeout", "a %s backend is in process and has no call timeout: remove call_timeout", typ)
	}
	switch {
	case !s.FairShare:
		return nil
	case i == 0:
		return field.Errorf("fair_share", "the first backend has no backend before it to take over from")
	case !local:
		return field.Errorf("fair_share", "only a memory backend can enforce a fair share, not %s", typ)
	}
	return nil
}
