package chain

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

func TestDecide(t *testing.T) {
	down := fmt.Errorf("%w: backend redis: %w", ErrUnavailable, errDown)
	tests := []struct {
		name   string
		err    error
		mode   FailureMode
		want   Answer
		wantOK bool
	}{
		{name: "nil error", err: nil, mode: FailOpen, want: AnswerUnavailable, wantOK: false},
		{name: "request error", err: limiter.ErrInvalidLimit, mode: FailClosed, want: AnswerUnavailable, wantOK: false},
		{name: "open", err: down, mode: FailOpen, want: AnswerOK, wantOK: true},
		{name: "closed", err: down, mode: FailClosed, want: AnswerOverLimit, wantOK: true},
		{name: "envoy", err: down, mode: FailEnvoy, want: AnswerUnavailable, wantOK: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Decide(tc.err, tc.mode)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("Decide(%v, %v): got %v, %v; want %v, %v", tc.err, tc.mode, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestFailurePolicy(t *testing.T) {
	p, err := NewFailurePolicy("open", map[string]string{"payments": "closed", "edge": "envoy"})
	if err != nil {
		t.Fatal(err)
	}
	for domain, want := range map[string]FailureMode{"payments": FailClosed, "edge": FailEnvoy, "other": FailOpen} {
		if got := p.For(domain); got != want {
			t.Errorf("For(%q): got %v, want %v", domain, got, want)
		}
	}
	if _, err := NewFailurePolicy("deny", map[string]string{"x": "maybe"}); err == nil ||
		!errorsContain(err, `unknown failure_mode "deny"`, `domain "x": unknown failure_mode "maybe"`) {
		t.Errorf("got %v, want both bad modes reported", err)
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

func TestFill(t *testing.T) {
	reqs := []limiter.Request{
		{Key: "a", Limit: limiter.Limit{Requests: 10, Period: time.Minute}, Hits: 1},
		{Key: "b", Limit: limiter.Limit{Requests: 5, Period: time.Second, Burst: 7, Algorithm: limiter.TokenBucket}, Hits: 1},
	}
	tests := []struct {
		name string
		a    Answer
		want []limiter.Result
	}{
		{name: "ok", a: AnswerOK, want: []limiter.Result{{Allowed: true, Limit: 10, Remaining: 10}, {Allowed: true, Limit: 7, Remaining: 7}}},
		{name: "over limit", a: AnswerOverLimit, want: []limiter.Result{{Limit: 10, ResetAfter: time.Second, RetryAfter: time.Second}, {Limit: 7, ResetAfter: time.Second, RetryAfter: time.Second}}},
		{name: "unavailable", a: AnswerUnavailable, want: []limiter.Result{{Remaining: 42}, {Remaining: 42}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := []limiter.Result{{Remaining: 42}, {Remaining: 42}}
			Fill(tc.a, reqs, res, time.Second)
			for i := range res {
				if res[i] != tc.want[i] {
					t.Errorf("res[%d]: got %+v, want %+v", i, res[i], tc.want[i])
				}
			}
		})
	}
}

func TestErrUnavailableFromTake(t *testing.T) {
	s := &fakeStore{}
	s.set(errDown, false)
	c := newChain(t, Options{Backends: []Backend{{Name: "redis", Store: s}}})
	err := take(t, c)
	if a, ok := Decide(err, FailClosed); !ok || a != AnswerOverLimit {
		t.Errorf("Decide(Take error, closed): got %v, %v; want over_limit, true", a, ok)
	}
	if !errors.Is(err, errDown) {
		t.Errorf("got %v, want it to wrap %v", err, errDown)
	}
}
