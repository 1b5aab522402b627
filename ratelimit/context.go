package ratelimit

import (
	"context"
	"strconv"
	"time"
)

// ctxKey is the context key of a decision.
type ctxKey struct{}

// decisionCtx carries a request's decision and the text of its headers in
// one allocation: the middleware's context value, header values and their
// []string slots all live here.
type decisionCtx struct {
	context.Context
	d    Decision
	vals [4]string // limit, remaining, reset, retry-after
}

// Value returns the decision for the package's key, else the parent's
// value (so that context.WithCancel still finds the parent's canceler).
func (c *decisionCtx) Value(key any) any {
	if _, ok := key.(ctxKey); ok {
		return c
	}
	return c.Context.Value(key)
}

// String describes the context for debugging.
func (c *decisionCtx) String() string { return "ratelimit.decisionCtx" }

// NewContext returns a child of ctx carrying d, which FromContext returns.
// The middleware and interceptors call it; call it yourself to test a
// handler that reads the decision.
func NewContext(ctx context.Context, d Decision) context.Context {
	return newDecisionCtx(ctx, d)
}

func newDecisionCtx(ctx context.Context, d Decision) *decisionCtx {
	return &decisionCtx{Context: ctx, d: d}
}

// FromContext returns the decision of the request whose context ctx is,
// and false when none was made (no middleware, or no descriptor applied).
// When two limits decided (a global middleware and a per-handler one) it is
// both merged: refused when either refused, every status, the longest wait.
func FromContext(ctx context.Context) (Decision, bool) {
	c, ok := ctx.Value(ctxKey{}).(*decisionCtx)
	if !ok {
		return Decision{}, false
	}
	return c.d, true
}

// headerValues formats the rate-limit header values of c's decision into
// c.vals, in one allocation: limit, remaining and reset (seconds, rounded
// up) of the limiting status when one exists, and Retry-After (seconds,
// rounded up, at least 1) when refused. It reports whether the limiting
// status exists.
func (c *decisionCtx) headerValues() bool {
	s, ok := c.d.Limiting()
	var buf [4 * 20]byte
	b := buf[:0]
	var ends [4]int
	if ok {
		b = strconv.AppendInt(b, s.Limit, 10)
		ends[0] = len(b)
		b = strconv.AppendInt(b, max(0, s.Remaining), 10)
		ends[1] = len(b)
		b = strconv.AppendInt(b, ceilSeconds(s.Reset), 10)
		ends[2] = len(b)
	}
	b = b[:ends[2]]
	if !c.d.Allowed {
		b = strconv.AppendInt(b, max(1, ceilSeconds(c.d.RetryAfter)), 10)
	}
	ends[3] = len(b)
	str := string(b)
	start := 0
	for i, e := range ends {
		if e < start {
			e = start
		}
		c.vals[i] = str[start:e]
		start = e
	}
	return ok
}

// ceilSeconds returns d in whole seconds, rounded up; 0 for d <= 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
