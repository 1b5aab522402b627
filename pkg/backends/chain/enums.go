package chain

import (
	"fmt"
	"strings"
)

// FailureMode says how to answer when no backend can decide.
type FailureMode uint8

const (
	// FailEnvoy answers gRPC UNAVAILABLE so that Envoy's own failure mode
	// (failure_mode_deny for rate limiting, failure_mode_allow for
	// ext_authz) decides. The zero value.
	FailEnvoy FailureMode = iota
	// FailOpen admits the request.
	FailOpen
	// FailClosed refuses the request (OVER_LIMIT, or 429 for ext_authz).
	FailClosed
)

// failureModes are the configuration names of the failure modes, in the
// order the documentation and messages list them.
var failureModes = names[FailureMode]{{FailOpen, "open"}, {FailClosed, "closed"}, {FailEnvoy, "envoy"}}

// String returns the configuration name of m.
func (m FailureMode) String() string { return failureModes.name(m, "failure_mode") }

// MarshalText returns the configuration name of m.
func (m FailureMode) MarshalText() ([]byte, error) { return failureModes.marshal(m, "failure mode") }

// UnmarshalText sets m to the mode named text ("open", "closed" or
// "envoy"; "" is the default, "envoy").
func (m *FailureMode) UnmarshalText(text []byte) error { return failureModes.unmarshal(m, text) }

func (m FailureMode) valid() bool { return failureModes.valid(m) }

// Readiness is a policy deciding when the chain is ready to serve.
type Readiness uint8

const (
	// ReadyAny: ready while at least one backend is usable. The zero value.
	ReadyAny Readiness = iota
	// ReadyPrimary: ready only while the first backend is usable.
	ReadyPrimary
	// ReadyAll: ready only while every backend is usable.
	ReadyAll
	// ReadyAlways: ready whatever the backends' state, since the failure
	// mode answers when none is usable. For a sidecar whose unreadiness
	// would also take the Envoy beside it out of service.
	ReadyAlways
)

// readinessNames are the configuration names of the readiness policies.
var readinessNames = names[Readiness]{{ReadyAny, "any"}, {ReadyPrimary, "primary"}, {ReadyAll, "all"}, {ReadyAlways, "always"}}

// String returns the configuration name of r.
func (r Readiness) String() string { return readinessNames.name(r, "readiness") }

// MarshalText returns the configuration name of r.
func (r Readiness) MarshalText() ([]byte, error) { return readinessNames.marshal(r, "readiness") }

// UnmarshalText sets r to the policy named text ("any", "primary", "all"
// or "always"; "" is the default, "any").
func (r *Readiness) UnmarshalText(text []byte) error { return readinessNames.unmarshal(r, text) }

func (r Readiness) valid() bool { return readinessNames.valid(r) }

// names is the one list of an enum's configuration names.
type names[T ~uint8] []struct {
	v    T
	name string
}

func (ns names[T]) lookup(v T) (string, bool) {
	for _, n := range ns {
		if n.v == v {
			return n.name, true
		}
	}
	return "", false
}

func (ns names[T]) valid(v T) bool {
	_, ok := ns.lookup(v)
	return ok
}

// name returns v's name, or what(N) for an unknown value.
func (ns names[T]) name(v T, what string) string {
	if s, ok := ns.lookup(v); ok {
		return s
	}
	return fmt.Sprintf("%s(%d)", what, uint8(v))
}

func (ns names[T]) marshal(v T, what string) ([]byte, error) {
	if s, ok := ns.lookup(v); ok {
		return []byte(s), nil
	}
	return nil, fmt.Errorf("unknown %s %d", what, uint8(v))
}

// unmarshal sets *p to the value named text; "" is the zero value.
func (ns names[T]) unmarshal(p *T, text []byte) error {
	if len(text) == 0 {
		*p = 0
		return nil
	}
	all := make([]string, len(ns))
	for i, n := range ns {
		if n.name == string(text) {
			*p = n.v
			return nil
		}
		all[i] = n.name
	}
	return fmt.Errorf("unknown value %q: choices are %s", text, strings.Join(all, ", "))
}
