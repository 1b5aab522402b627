package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/rlsclient"
)

// rls is what a Limiter asks for decisions: an *rlsclient.Client remotely,
// a *server.Server in process. Unstable seam: the in-process side is meant
// to move to a proto-free decision function of pkg/server.
type rls interface {
	ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error)
}

// Limiter decides over extauthz rules, in process (Open, New) or against a
// running extauthz (Dial); the caller's code is the same for both. It is
// safe for concurrent use.
type Limiter struct {
	rls        rls
	failure    FailureMode
	closedWait time.Duration // RetryAfter of a FailClosed answer
	// rules, in process only, tells shadow rules apart (the
	// RateLimitService response does not say).
	rules   *descriptor.Set
	closers []func() error
	closed  atomic.Bool
}

var _ Decider = (*Limiter)(nil)

// Decide counts one request of domain carrying descriptors and returns the
// decision. No descriptors allow the request without asking. When no
// decision can be made (the service is down or late, its backends failed),
// the failure mode answers; with FailError, and for a request the service
// rejects (an empty domain, a descriptor without entries or with an empty
// key), the error is returned. A done ctx returns its error.
func (l *Limiter) Decide(ctx context.Context, domain string, descriptors []Descriptor) (Decision, error) {
	if l.closed.Load() {
		return Decision{}, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return Decision{}, fmt.Errorf("ratelimit: decide: %w", err)
	}
	if len(descriptors) == 0 {
		return Decision{Allowed: true}, nil
	}
	resp, err := l.rls.ShouldRateLimit(ctx, newRequest(domain, descriptors))
	if err != nil {
		return l.failed(ctx, err)
	}
	d := decisionOf(resp)
	if l.rules != nil {
		l.markShadow(domain, descriptors, d.Statuses)
	}
	return d, nil
}

// failed answers a failed call by the failure mode.
func (l *Limiter) failed(ctx context.Context, err error) (Decision, error) {
	if cerr := ctx.Err(); cerr != nil {
		return Decision{}, fmt.Errorf("ratelimit: decide: %w", cerr)
	}
	if !rlsclient.Unavailable(err) {
		return Decision{}, fmt.Errorf("ratelimit: decide: %w", err)
	}
	switch l.failure {
	case FailOpen:
		return Decision{Allowed: true, Failed: true}, nil
	case FailClosed:
		return Decision{Failed: true, RetryAfter: l.closedWait}, nil
	}
	return Decision{}, fmt.Errorf("ratelimit: no decision: %w", err)
}

// markShadow sets Shadow on the counted statuses whose rule is a shadow
// rule.
func (l *Limiter) markShadow(domain string, ds []Descriptor, sts []Status) {
	var d descriptor.Descriptor
	for i := range sts {
		s := &sts[i]
		if !s.Counted || i >= len(ds) {
			continue
		}
		d = d[:0]
		for _, e := range ds[i] {
			d = append(d, descriptor.Entry{Key: e.Key, Value: e.Value})
		}
		if r, ok := l.rules.Match(domain, d); ok && r.Shadow {
			s.Shadow = true
		}
	}
}

// Close releases the limiter: its connection, or its backends. Decide
// fails with ErrClosed afterwards.
func (l *Limiter) Close() error {
	if l.closed.Swap(true) {
		return nil
	}
	var first error
	for _, c := range l.closers {
		if err := c(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// newRequest builds the RateLimitService request, its messages in three
// allocations.
func newRequest(domain string, ds []Descriptor) *rlsv3.RateLimitRequest {
	total := 0
	for _, d := range ds {
		total += len(d)
	}
	descs := make([]ratelimitv3.RateLimitDescriptor, len(ds))
	ptrs := make([]*ratelimitv3.RateLimitDescriptor, len(ds))
	ents := make([]ratelimitv3.RateLimitDescriptor_Entry, total)
	eptrs := make([]*ratelimitv3.RateLimitDescriptor_Entry, total)
	n := 0
	for i, d := range ds {
		start := n
		for _, e := range d {
			ents[n].Key, ents[n].Value = e.Key, e.Value
			eptrs[n] = &ents[n]
			n++
		}
		descs[i].Entries = eptrs[start:n:n]
		ptrs[i] = &descs[i]
	}
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ptrs}
}

// decisionOf reads a RateLimitService response.
func decisionOf(resp *rlsv3.RateLimitResponse) Decision {
	d := Decision{Allowed: resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT}
	d.Statuses = make([]Status, len(resp.GetStatuses()))
	var longest time.Duration
	for i, st := range resp.GetStatuses() {
		l := st.GetCurrentLimit()
		if l == nil {
			continue // unmatched, unlimited or replaced
		}
		s := &d.Statuses[i]
		s.Counted = true
		s.Allowed = st.GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT
		s.Limit = int64(l.GetRequestsPerUnit())
		s.Period = descriptor.Unit(l.GetUnit()).Period() * time.Duration(max(1, l.GetUnitMultiplier().GetValue()))
		s.Remaining = int64(st.GetLimitRemaining())
		s.Reset = st.GetDurationUntilReset().AsDuration()
		s.Rule = l.GetName()
		if !s.Allowed {
			longest = max(longest, s.Reset)
		}
	}
	if d.Allowed {
		return d
	}
	// The service's Retry-After (response headers enabled) knows each
	// algorithm's wait; without it the longest reset of a refusing
	// descriptor is an upper bound.
	d.RetryAfter = longest
	for _, h := range resp.GetResponseHeadersToAdd() {
		if h.GetKey() == "Retry-After" {
			if n, err := strconv.ParseInt(h.GetValue(), 10, 64); err == nil && n >= 0 && n < math.MaxInt64/int64(time.Second) {
				d.RetryAfter = time.Duration(n) * time.Second
			}
		}
	}
	return d
}
