package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// Failover is the failover part of the server file: how each backend of the
// chain is guarded, how it is health-checked, what readiness means, and what
// a request gets when no backend can decide. Config inlines it, so its keys
// are top-level:
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
// Zero values are the documented defaults; Validate fills them in (the same
// values as the chain package's defaults).
type Failover struct {
	// FailureMode answers requests no backend can decide: "open" (OK),
	// "closed" (OVER_LIMIT) or "envoy" (gRPC UNAVAILABLE, so Envoy's
	// failure_mode_deny decides). Default "envoy".
	FailureMode string `yaml:"failure_mode"`
	// DomainFailureModes overrides FailureMode for the domains it names.
	DomainFailureModes map[string]string `yaml:"domain_failure_modes"`
	// Breaker configures every remote backend's circuit breaker.
	Breaker Breaker `yaml:"breaker"`
	// HealthCheck configures the active health checks.
	HealthCheck HealthCheck `yaml:"health_check"`
	// Readiness is the /readyz and gRPC health policy: "any" (default: ready
	// while at least one backend is usable), "primary" (the first backend),
	// "all", or "always" (whatever the backends' state: failure_mode
	// answers; for sidecars, whose unreadiness would take Envoy out too).
	Readiness string `yaml:"readiness"`
	// Replicas is how many extauthz replicas share the first backend: a
	// backend with fair_share divides every limit by it (default 1).
	Replicas int `yaml:"replicas"`
}

// Breaker configures the circuit breaker of each remote backend.
type Breaker struct {
	// CallTimeout bounds each backend call (default 10ms; negative: none).
	CallTimeout time.Duration `yaml:"call_timeout"`
	// ConsecutiveFailures trips the breaker (default 5).
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// FailureRatio trips the breaker once this fraction of the calls within
	// Window failed, counted from MinRequests calls (default 0.5; negative
	// disables).
	FailureRatio float64 `yaml:"failure_ratio"`
	MinRequests  int     `yaml:"min_requests"`
	// Window of the failure ratio (default 10s).
	Window time.Duration `yaml:"window"`
	// OpenFor is how long a tripped breaker stays open (default 5s).
	OpenFor time.Duration `yaml:"open_for"`
	// HalfOpenProbes successful probes close a half-open breaker (default 1).
	HalfOpenProbes int `yaml:"half_open_probes"`
}

// HealthCheck configures the active health checks (PING for Redis).
type HealthCheck struct {
	// Interval between probes of a backend (default 1s).
	Interval time.Duration `yaml:"interval"`
	// Timeout of each probe (default 100ms).
	Timeout time.Duration `yaml:"timeout"`
	// Disabled turns active health checks off: breakers then probe with
	// real traffic when half-open.
	Disabled bool `yaml:"disabled"`
}

// BackendFailover holds the failover settings of one backends entry; Backend
// inlines it.
type BackendFailover struct {
	// FairShare, on a memory backend that follows a shared one, divides
	// every limit by Failover.Replicas while it serves.
	FairShare bool `yaml:"fair_share"`
}

// Choices of the failover settings.
var (
	FailureModes = []string{"open", "closed", "envoy"}
	Readiness    = []string{"any", "primary", "all", "always"}
)

// Defaults of Failover (equal to the chain package's).
const (
	DefaultFailureMode         = "envoy"
	DefaultReadiness           = "any"
	DefaultReplicas            = 1
	DefaultCallTimeout         = 10 * time.Millisecond
	DefaultConsecutiveFailures = 5
	DefaultFailureRatio        = 0.5
	DefaultMinRequests         = 20
	DefaultBreakerWindow       = 10 * time.Second
	DefaultOpenFor             = 5 * time.Second
	DefaultHalfOpenProbes      = 1
	DefaultHealthInterval      = time.Second
	DefaultHealthTimeout       = 100 * time.Millisecond
)

// Validate fills in the defaults of f's zero values and returns every
// problem, each prefixed with its key path (e.g. "breaker.failure_ratio: 1.5
// is above 1").
func (f *Failover) Validate() error {
	f.setDefaults()
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	choice := func(path, v string, choices []string) {
		if v != "" && !slices.Contains(choices, v) {
			add(path, "unknown value %q: choices are %s", v, strings.Join(choices, ", "))
		}
	}
	choice("failure_mode", f.FailureMode, FailureModes)
	for _, d := range slices.Sorted(maps.Keys(f.DomainFailureModes)) {
		if d == "" {
			add("domain_failure_modes", "empty domain name")
		}
		choice("domain_failure_modes."+d, f.DomainFailureModes[d], FailureModes)
	}
	choice("readiness", f.Readiness, Readiness)
	if f.Replicas < 0 {
		add("replicas", "%d is negative: want the number of replicas sharing the first backend", f.Replicas)
	}
	b := f.Breaker
	for _, n := range []struct {
		path string
		v    int
	}{
		{"breaker.consecutive_failures", b.ConsecutiveFailures},
		{"breaker.min_requests", b.MinRequests},
		{"breaker.half_open_probes", b.HalfOpenProbes},
	} {
		if n.v < 0 || n.v > math.MaxUint32 {
			add(n.path, "%d is out of range: want 0 (default) to %d", n.v, uint32(math.MaxUint32))
		}
	}
	if math.IsNaN(b.FailureRatio) || b.FailureRatio > 1 {
		add("breaker.failure_ratio", "%v is above 1: want a fraction of calls, e.g. 0.5 (negative: off)", b.FailureRatio)
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{
		{"breaker.window", b.Window},
		{"breaker.open_for", b.OpenFor},
		{"health_check.interval", f.HealthCheck.Interval},
		{"health_check.timeout", f.HealthCheck.Timeout},
	} {
		if d.v < 0 {
			add(d.path, "%v is negative: want a duration such as 5s (0: default)", d.v)
		}
	}
	return errors.Join(errs...)
}

func (f *Failover) setDefaults() {
	setDefault(&f.FailureMode, DefaultFailureMode)
	setDefault(&f.Readiness, DefaultReadiness)
	setDefault(&f.Replicas, DefaultReplicas)
	b := &f.Breaker
	setDefault(&b.CallTimeout, DefaultCallTimeout)
	setDefault(&b.ConsecutiveFailures, DefaultConsecutiveFailures)
	setDefault(&b.FailureRatio, DefaultFailureRatio)
	setDefault(&b.MinRequests, DefaultMinRequests)
	setDefault(&b.Window, DefaultBreakerWindow)
	setDefault(&b.OpenFor, DefaultOpenFor)
	setDefault(&b.HalfOpenProbes, DefaultHalfOpenProbes)
	setDefault(&f.HealthCheck.Interval, DefaultHealthInterval)
	setDefault(&f.HealthCheck.Timeout, DefaultHealthTimeout)
}

func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}

// ValidateFairShare checks the fair_share flag of the i-th backends entry.
func (b BackendFailover) ValidateFairShare(i int, typ string) error {
	switch {
	case !b.FairShare:
		return nil
	case i == 0:
		return fmt.Errorf("backends[%d].fair_share: the first backend has no backend before it to take over from", i)
	case typ != "memory":
		return fmt.Errorf("backends[%d].fair_share: only a memory backend can enforce a fair share, not %s", i, typ)
	}
	return nil
}
