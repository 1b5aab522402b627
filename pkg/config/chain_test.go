package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/field"
)

func TestFailoverDecode(t *testing.T) {
	src := `
failure_mode: closed
domain_failure_modes: {search: open}
breaker:
  call_timeout: 15ms
  consecutive_failures: 3
  failure_ratio: 0.25
  min_requests: 40
  window: 30s
  open_for: 2s
  half_open_probes: 2
health_check: {interval: 500ms, timeout: 50ms}
readiness: primary
replicas: 4
`
	var got chain.Settings
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := chain.Settings{
		FailureMode:        chain.FailClosed,
		DomainFailureModes: map[string]chain.FailureMode{"search": chain.FailOpen},
		Breaker: chain.BreakerSettings{
			CallTimeout: 15 * time.Millisecond, ConsecutiveFailures: 3, FailureRatio: 0.25, MinRequests: 40,
			Window: 30 * time.Second, OpenFor: 2 * time.Second, HalfOpenProbes: 2,
		},
		HealthCheck: chain.HealthSettings{Interval: 500 * time.Millisecond, Timeout: 50 * time.Millisecond},
		Readiness:   chain.ReadyPrimary,
		Replicas:    4,
	}
	if got.FailureMode != want.FailureMode || got.DomainFailureModes["search"] != chain.FailOpen || got.Breaker != want.Breaker ||
		got.HealthCheck != want.HealthCheck || got.Readiness != want.Readiness || got.Replicas != want.Replicas {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: got %v, want nil", err)
	}
}

func TestFailoverValidate(t *testing.T) {
	tests := []struct {
		name    string
		f       chain.Settings
		wantErr []string
	}{
		{name: "zero is valid", f: chain.Settings{}},
		{name: "negative call timeout disables it", f: chain.Settings{Breaker: chain.BreakerSettings{CallTimeout: -1, FailureRatio: -1}}},
		{
			name:    "empty domain",
			f:       chain.Settings{DomainFailureModes: map[string]chain.FailureMode{"": chain.FailOpen}},
			wantErr: []string{"domain_failure_modes: empty domain name"},
		},
		{name: "negative replicas", f: chain.Settings{Replicas: -2}, wantErr: []string{"replicas: -2 is negative"}},
		{
			name:    "breaker numbers",
			f:       chain.Settings{Breaker: chain.BreakerSettings{ConsecutiveFailures: -1, MinRequests: -1, HalfOpenProbes: -3, FailureRatio: 1.5}},
			wantErr: []string{"breaker.consecutive_failures: -1 is out of range", "breaker.min_requests: -1", "breaker.half_open_probes: -3", "breaker.failure_ratio: 1.5 is above 1"},
		},
		{
			name:    "negative durations",
			f:       chain.Settings{Breaker: chain.BreakerSettings{Window: -time.Second, OpenFor: -time.Second}, HealthCheck: chain.HealthSettings{Interval: -time.Second, Timeout: -time.Millisecond}},
			wantErr: []string{"breaker.window: -1s is negative", "breaker.open_for: -1s", "health_check.interval: -1s", "health_check.timeout: -1ms"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.f.Validate()
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatalf("got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("got nil, want errors %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// Failure mode and readiness names are checked as they are decoded.
func TestFailoverBadNames(t *testing.T) {
	src := "failure_mode: deny\ndomain_failure_modes: {a: allow, \"\": open}\nreadiness: some\n"
	_, err := Load(strings.NewReader(src), "test.yaml")
	if err == nil {
		t.Fatal("got nil, want errors")
	}
	for _, w := range []string{
		`failure_mode: unknown value "deny": choices are open, closed, envoy`, `domain_failure_modes.a: unknown value "allow"`,
		"domain_failure_modes: empty domain name", `readiness: unknown value "some": choices are any, primary, all, always`,
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("got %q, want it to contain %q", err, w)
		}
	}
}

func TestBackendFailoverValidateFairShare(t *testing.T) {
	tests := []struct {
		name    string
		b       chain.BackendSettings
		i       int
		typ     string
		wantErr string
	}{
		{name: "off", b: chain.BackendSettings{}, i: 0, typ: "redis"},
		{name: "memory after redis", b: chain.BackendSettings{FairShare: true}, i: 1, typ: "memory"},
		{name: "first", b: chain.BackendSettings{FairShare: true}, i: 0, typ: "memory", wantErr: "backends[0].fair_share: the first backend"},
		{name: "redis", b: chain.BackendSettings{FairShare: true}, i: 1, typ: "redis", wantErr: "only a memory backend"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := field.Wrap(fmt.Sprintf("backends[%d]", tc.i), tc.b.Validate(tc.i, tc.typ, tc.typ == "memory"))
			if (err == nil) != (tc.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tc.wantErr)) {
				t.Errorf("got %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestFailoverValidateFillsDefaults(t *testing.T) {
	var f chain.Settings
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	want := chain.Settings{
		FailureMode: chain.FailEnvoy,
		Readiness:   chain.ReadyAny,
		Replicas:    1,
		Breaker: chain.BreakerSettings{
			CallTimeout: 10 * time.Millisecond, ConsecutiveFailures: 5, FailureRatio: 0.5, MinRequests: 20,
			Window: 10 * time.Second, OpenFor: 5 * time.Second, HalfOpenProbes: 1,
		},
		HealthCheck: chain.HealthSettings{Interval: time.Second, Timeout: 100 * time.Millisecond},
	}
	if f.FailureMode != want.FailureMode || f.Readiness != want.Readiness || f.Replicas != want.Replicas ||
		f.Breaker != want.Breaker || f.HealthCheck != want.HealthCheck {
		t.Errorf("got %+v, want %+v", f, want)
	}
	// Explicit "off" values survive.
	f = chain.Settings{Breaker: chain.BreakerSettings{CallTimeout: -1, FailureRatio: -1}, HealthCheck: chain.HealthSettings{Disabled: true}}
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	if f.Breaker.CallTimeout != -1 || f.Breaker.FailureRatio != -1 || !f.HealthCheck.Disabled {
		t.Errorf("got %+v, want call_timeout -1ns, failure_ratio -1, health checks disabled", f)
	}
}
