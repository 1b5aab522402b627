package chain

import (
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
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

var failureModeNames = [...]string{"envoy", "open", "closed"}

// String returns the configuration name of m.
func (m FailureMode) String() string {
	if int(m) < len(failureModeNames) {
		return failureModeNames[m]
	}
	return fmt.Sprintf("failure_mode(%d)", uint8(m))
}

// ParseFailureMode returns the FailureMode named s ("open", "closed" or
// "envoy"; "" is "envoy").
func ParseFailureMode(s string) (FailureMode, error) {
	if s == "" {
		return FailEnvoy, nil
	}
	for i, n := range failureModeNames {
		if n == s {
			return FailureMode(i), nil
		}
	}
	return 0, fmt.Errorf("unknown failure_mode %q: choices are open, closed, envoy", s)
}

// FailurePolicy is the failure mode of every domain: Domains overrides
// Default. It is immutable once built; For is safe for concurrent use.
type FailurePolicy struct {
	Default FailureMode
	Domains map[string]FailureMode
}

// NewFailurePolicy parses the global failure mode def and the per-domain
// overrides (domain → mode).
func NewFailurePolicy(def string, domains map[string]string) (FailurePolicy, error) {
	var errs []error
	p := FailurePolicy{}
	m, err := ParseFailureMode(def)
	if err != nil {
		errs = append(errs, err)
	}
	p.Default = m
	if len(domains) > 0 {
		p.Domains = make(map[string]FailureMode, len(domains))
		for d, s := range domains {
			m, err := ParseFailureMode(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("domain %q: %w", d, err))
			}
			p.Domains[d] = m
		}
	}
	return p, errors.Join(errs...)
}

// For returns the failure mode of domain.
func (p FailurePolicy) For(domain string) FailureMode {
	if m, ok := p.Domains[domain]; ok {
		return m
	}
	return p.Default
}

// Answer is what the server replies to a call no backend could decide.
type Answer uint8

const (
	// AnswerUnavailable: reply gRPC codes.Unavailable (never UNKNOWN, which
	// Envoy lets through whatever its failure mode). The zero value.
	AnswerUnavailable Answer = iota
	// AnswerOK: admit (overall code OK).
	AnswerOK
	// AnswerOverLimit: refuse (overall code OVER_LIMIT).
	AnswerOverLimit
)

var answerNames = [...]string{"unavailable", "ok", "over_limit"}

// String returns the metric label of a.
func (a Answer) String() string {
	if int(a) < len(answerNames) {
		return answerNames[a]
	}
	return fmt.Sprintf("answer(%d)", uint8(a))
}

// Decide maps the error of a Take to the answer that mode prescribes. ok is
// false when err does not wrap ErrUnavailable (nil, or a request error such
// as limiter.ErrInvalidLimit): the server answers those itself.
func Decide(err error, mode FailureMode) (a Answer, ok bool) {
	if err == nil || !errors.Is(err, ErrUnavailable) {
		return AnswerUnavailable, false
	}
	switch mode {
	case FailOpen:
		return AnswerOK, true
	case FailClosed:
		return AnswerOverLimit, true
	default:
		return AnswerUnavailable, true
	}
}

// Fill writes into res the results reported with answer a for reqs, so the
// server can build statuses and headers as usual: AnswerOK admits every
// request with its whole capacity remaining; AnswerOverLimit refuses every
// request with nothing remaining and retryAfter as RetryAfter and
// ResetAfter (e.g. the breaker's OpenFor). AnswerUnavailable writes nothing.
func Fill(a Answer, reqs []limiter.Request, res []limiter.Result, retryAfter time.Duration) {
	for i := range min(len(reqs), len(res)) {
		c := reqs[i].Limit.Capacity()
		switch a {
		case AnswerOK:
			res[i] = limiter.Result{Allowed: true, Limit: c, Remaining: c}
		case AnswerOverLimit:
			res[i] = limiter.Result{Limit: c, ResetAfter: retryAfter, RetryAfter: retryAfter}
		}
	}
}

// OpenFor returns how long a tripped breaker stays open: a sensible
// Retry-After for a fail-closed answer.
func (c *Chain) OpenFor() time.Duration { return c.breaker.OpenFor }
