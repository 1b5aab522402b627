package secret

import (
	"fmt"
	"testing"
)

func TestString(t *testing.T) {
	var s String
	if err := s.UnmarshalText([]byte("hunter2")); err != nil || string(s) != "hunter2" {
		t.Fatalf("UnmarshalText: got %q, %v; want the secret stored", string(s), err)
	}
	text, err := s.MarshalText()
	if err != nil || string(text) != Redacted {
		t.Errorf("MarshalText: got %q, %v; want %q", text, err, Redacted)
	}
	if got := fmt.Sprintf("%v %s", s, s); got != Redacted+" "+Redacted {
		t.Errorf("fmt: got %q, want it redacted", got)
	}
	if got := String("").String(); got != "" {
		t.Errorf("empty: got %q, want empty", got)
	}
}
