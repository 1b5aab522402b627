package limiter

import (
	"errors"
	"testing"
)

func TestAlgorithmText(t *testing.T) {
	for _, a := range []Algorithm{FixedWindow, SlidingWindow, TokenBucket} {
		text, err := a.MarshalText()
		if err != nil || string(text) != a.String() {
			t.Errorf("%v.MarshalText() = %q, %v", a, text, err)
		}
		var got Algorithm
		if err := got.UnmarshalText(text); err != nil || got != a {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, got, err, a)
		}
	}
	var a Algorithm
	err := a.UnmarshalText([]byte("gcra"))
	if !errors.Is(err, ErrUnknownAlgorithm) || err.Error() != `unknown algorithm "gcra": expected fixed_window, sliding_window or token_bucket` {
		t.Errorf("UnmarshalText(gcra) = %v", err)
	}
	if _, err := Algorithm(3).MarshalText(); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("Algorithm(3).MarshalText() = %v; want ErrUnknownAlgorithm", err)
	}
}

func TestModeText(t *testing.T) {
	for m, name := range map[Mode]string{CountAll: "all", CountIfAllAllowed: "if_all_allowed"} {
		text, err := m.MarshalText()
		if err != nil || string(text) != name || m.String() != name {
			t.Errorf("%d.MarshalText() = %q, %v; want %q", m, text, err, name)
		}
		var got Mode
		if err := got.UnmarshalText(text); err != nil || got != m {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, got, err, m)
		}
	}
	var m Mode
	if err := m.UnmarshalText([]byte("sometimes")); err == nil || err.Error() != `unknown count mode "sometimes": expected all or if_all_allowed` {
		t.Errorf("UnmarshalText(sometimes) = %v", err)
	}
	if _, err := Mode(2).MarshalText(); err == nil {
		t.Error("Mode(2).MarshalText() succeeded")
	}
}
