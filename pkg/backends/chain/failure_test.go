package chain

import (
	"errors"
	"strings"
	"testing"
)

func TestFailurePolicy(t *testing.T) {
	p := Settings{FailureMode: FailOpen, DomainFailureModes: map[string]FailureMode{"payments": FailClosed, "edge": FailEnvoy}}.FailurePolicy()
	for domain, want := range map[string]FailureMode{"payments": FailClosed, "edge": FailEnvoy, "other": FailOpen} {
		if got := p.For(domain); got != want {
			t.Errorf("For(%q): got %v, want %v", domain, got, want)
		}
	}
	var m FailureMode
	if err := m.UnmarshalText([]byte("deny")); err == nil ||
		!errorsContain(err, `unknown value "deny": choices are open, closed, envoy`) {
		t.Errorf("got %v, want the bad mode reported with the choices", err)
	}
	var zero FailurePolicy
	if got := zero.For("x"); got != FailEnvoy {
		t.Errorf("zero policy: got %v, want envoy", got)
	}
}

func errorsContain(err error, subs ...string) bool {
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			return false
		}
	}
	return true
}

func TestErrUnavailableFromTake(t *testing.T) {
	s := &fakeStore{}
	s.set(errDown, false)
	c := newChain(t, Options{Backends: []Backend{{Name: "redis", Store: s}}})
	err := take(t, c)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("got %v, want it to wrap ErrUnavailable", err)
	}
	if !errors.Is(err, errDown) {
		t.Errorf("got %v, want it to wrap %v", err, errDown)
	}
}
