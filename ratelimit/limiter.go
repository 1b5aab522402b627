package ratelimit

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/rlsclient"
	"github.com/extauthz/extauthz/pkg/server"
)

// Limiter decides over extauthz rules, in process (Open, New) or against a
// running extauthz (Dial); the caller's code is the same for both. It is
// safe for concurrent use.
type Limiter struct {
	local      *server.Server    // in process
	remote     *rlsclient.Client // remote
	failure    FailureMode
	closedWait time.Duration // RetryAfter of a FailClosed answer
	closers    []func() error
	closed     atomic.Bool
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
	if l.local != nil {
		return l.decideLocal(ctx, domain, descriptors)
	}
	resp, err := l.remote.ShouldRateLimit(ctx, newRequest(domain, descriptors))
	if err != nil {
		return l.failed(ctx, err)
	}
	return decisionOf(resp), nil
}

// localCall is the working memory of one in-process decision, pooled.
type localCall struct {
	ds []descriptor.Descriptor
	r  server.Result
}

var localCalls = sync.Pool{New: func() any { return new(localCall) }}

// decideLocal asks the in-process server: no protocol, no copies but the
// returned statuses.
func (l *Limiter) decideLocal(ctx context.Context, domain string, descriptors []Descriptor) (Decision, error) {
	c := localCalls.Get().(*localCall)
	defer func() {
		clear(c.ds)
		c.ds = c.ds[:0]
		localCalls.Put(c)
	}()
	for _, d := range descriptors {
		c.ds = append(c.ds, descriptor.Descriptor(d))
	}
	if err := l.local.Decide(ctx, domain, c.ds, &c.r); err != nil {
		return l.failed(ctx, err)
	}
	d := Decision{Allowed: c.r.Allowed, RetryAfter: c.r.RetryAfter, Failed: c.r.Failed}
	d.Statuses = make([]Status, len(c.r.Statuses))
	for i, st := range c.r.Statuses {
		if !st.Counted {
			continue
		}
		d.Statuses[i] = Status{
			Counted: true, Allowed: st.Allowed, Shadow: st.Shadow, Rule: st.Rule,
			Limit: st.Limit.Requests, Period: st.Limit.Period, Burst: st.Limit.Burst,
			Remaining: st.Remaining, Reset: st.Reset,
		}
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
