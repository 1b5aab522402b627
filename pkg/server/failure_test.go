package server

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/limiter"
)

func TestFailureAnswer(t *testing.T) {
	for mode, want := range map[chain.FailureMode]failureID{
		chain.FailOpen:   failureOpen,
		chain.FailClosed: failureClosed,
		chain.FailEnvoy:  failureUnavailable,
	} {
		if got := failureAnswer(mode); got != want {
			t.Errorf("failureAnswer(%v): got %v, want %v", mode, failureNames[got], failureNames[want])
		}
	}
}

func TestFillFailure(t *testing.T) {
	reqs := []limiter.Request{
		{Key: "a", Limit: limiter.Limit{Requests: 10, Period: time.Minute}, Hits: 1},
		{Key: "b", Limit: limiter.Limit{Requests: 5, Period: time.Second, Burst: 7, Algorithm: limiter.TokenBucket}, Hits: 1},
	}
	tests := []struct {
		name string
		a    failureID
		want []limiter.Result
	}{
		{name: "ok", a: failureOpen, want: []limiter.Result{{Allowed: true, Limit: 10, Remaining: 10}, {Allowed: true, Limit: 7, Remaining: 7}}},
		{name: "over limit", a: failureClosed, want: []limiter.Result{{Limit: 10, ResetAfter: time.Second, RetryAfter: time.Second}, {Limit: 7, ResetAfter: time.Second, RetryAfter: time.Second}}},
		{name: "unavailable", a: failureUnavailable, want: []limiter.Result{{Remaining: 42}, {Remaining: 42}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := []limiter.Result{{Remaining: 42}, {Remaining: 42}}
			fillFailure(tc.a, reqs, res, time.Second)
			for i := range res {
				if res[i] != tc.want[i] {
					t.Errorf("res[%d]: got %+v, want %+v", i, res[i], tc.want[i])
				}
			}
		})
	}
}
