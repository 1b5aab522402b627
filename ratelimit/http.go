package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"sync"

	"github.com/extauthz/extauthz/pkg/field"
)

// Response header names, canonical.
const (
	LimitHeader      = "X-Ratelimit-Limit"
	RemainingHeader  = "X-Ratelimit-Remaining"
	ResetHeader      = "X-Ratelimit-Reset"
	RetryAfterHeader = "Retry-After"
)

// HTTPOptions configures a Middleware. Zero values are the documented
// defaults.
type HTTPOptions struct {
	// Domain is the rule domain to decide in. Required.
	Domain string
	// Descriptors are the global descriptors, one []Key each, sent for
	// every request that Handler wraps (a descriptor with a key that has
	// no value is left out). Limit takes its own.
	Descriptors [][]Key
	// HideAllowedHeaders leaves the X-RateLimit-* headers out of allowed
	// responses (default: every decided response carries them).
	HideAllowedHeaders bool
	// RefusedBody and RefusedContentType are the 429 answer's body
	// (default "rate limit exceeded\n", "text/plain; charset=utf-8").
	RefusedBody        []byte
	RefusedContentType string
	// Refused, when set, answers refused requests instead (it writes the
	// status itself; the headers are set and FromContext has the
	// decision).
	Refused http.Handler
	// OnError answers when no decision could be made (FailError) (default:
	// 503 Service Unavailable, "rate limit unavailable").
	OnError func(w http.ResponseWriter, r *http.Request, err error)
}

// Validate reports invalid options, each error a *field.Error.
func (o *HTTPOptions) Validate() error {
	var errs []error
	if o.Domain == "" {
		errs = append(errs, field.Errorf("Domain", "required"))
	}
	for i, d := range o.Descriptors {
		if err := validateKeys(d); err != nil {
			errs = append(errs, field.Wrap(fmt.Sprintf("Descriptors[%d]", i), err))
		}
	}
	return errors.Join(errs...)
}

func validateKeys(keys []Key) error {
	if len(keys) == 0 {
		return field.Errorf("", "a descriptor needs at least one key")
	}
	for j, k := range keys {
		switch {
		case k.Name == "":
			return field.Errorf(fmt.Sprintf("[%d].Name", j), "required")
		case k.Value == nil:
			return field.Errorf(fmt.Sprintf("[%d].Value", j), "required")
		}
	}
	return nil
}

// Middleware limits HTTP requests: Handler with the global descriptors,
// Limit with a handler's own. It is safe for concurrent use.
type Middleware struct {
	d Decider
	o HTTPOptions
}

// NewMiddleware returns a Middleware asking d.
func NewMiddleware(d Decider, o HTTPOptions) (*Middleware, error) {
	if d == nil {
		return nil, errors.New("ratelimit: middleware without decider")
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	if o.RefusedBody == nil {
		o.RefusedBody = []byte("rate limit exceeded\n")
	}
	if o.RefusedContentType == "" {
		o.RefusedContentType = "text/plain; charset=utf-8"
	}
	if o.OnError == nil {
		o.OnError = func(w http.ResponseWriter, _ *http.Request, _ error) {
			http.Error(w, "rate limit unavailable", http.StatusServiceUnavailable)
		}
	}
	return &Middleware{d: d, o: o}, nil
}

// Handler returns next limited by the global descriptors: the global
// middleware, e.g. around a mux.
func (m *Middleware) Handler(next http.Handler) http.Handler {
	return m.limit(next, m.o.Descriptors)
}

// Limit returns next limited by descriptors instead of the global ones: a
// per-handler limit (e.g. Named("login", ...) on POST /login), decided in
// addition to any global middleware around it. It fails only on invalid
// descriptors.
func (m *Middleware) Limit(next http.Handler, descriptors ...[]Key) (http.Handler, error) {
	for i, d := range descriptors {
		if err := validateKeys(d); err != nil {
			return nil, fmt.Errorf("ratelimit: %w", field.Wrap(fmt.Sprintf("descriptors[%d]", i), err))
		}
	}
	return m.limit(next, descriptors), nil
}

func (m *Middleware) limit(next http.Handler, specs [][]Key) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.serve(w, r, next, specs)
	})
}

// serve decides r, then passes it on with the decision in its context, or
// refuses it.
func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler, specs [][]Key) {
	sc := scratchPool.Get().(*scratch)
	ds := sc.build(r, specs)
	if len(ds) == 0 {
		sc.reset()
		scratchPool.Put(sc)
		next.ServeHTTP(w, r)
		return
	}
	ctx := r.Context()
	d, err := m.d.Decide(ctx, m.o.Domain, ds)
	sc.reset()
	scratchPool.Put(sc)
	if err != nil {
		m.o.OnError(w, r, err)
		return
	}
	if prev, ok := ctx.Value(ctxKey{}).(*decisionCtx); ok {
		d = Merge(prev.d, d)
	}
	c := newDecisionCtx(ctx, d)
	r = r.WithContext(c)
	if d.Allowed {
		if !m.o.HideAllowedHeaders {
			c.setHeaders(w.Header())
		}
		next.ServeHTTP(w, r)
		return
	}
	c.setHeaders(w.Header())
	if m.o.Refused != nil {
		m.o.Refused.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", m.o.RefusedContentType)
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(m.o.RefusedBody)
}

// setHeaders sets the rate-limit headers of c's decision on h, the values
// and their []string slots from c (no further allocation).
func (c *decisionCtx) setHeaders(h http.Header) {
	ok := c.headerValues()
	if ok {
		h[LimitHeader] = c.vals[0:1:1]
		h[RemainingHeader] = c.vals[1:2:2]
		h[ResetHeader] = c.vals[2:3:3]
	}
	if !c.d.Allowed {
		h[RetryAfterHeader] = c.vals[3:4:4]
	}
}

// scratch holds the descriptors of one request, pooled.
type scratch struct {
	entries []Entry
	descs   []Descriptor
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// build reads every descriptor of specs from r; one whose key has no value
// is left out.
func (sc *scratch) build(r *http.Request, specs [][]Key) []Descriptor {
	sc.entries, sc.descs = sc.entries[:0], sc.descs[:0]
	total := 0
	for _, s := range specs {
		total += len(s)
	}
	if cap(sc.entries) < total {
		sc.entries = make([]Entry, 0, total)
	}
next:
	for _, s := range specs {
		start := len(sc.entries)
		for _, k := range s {
			v, ok := k.Value(r)
			if !ok {
				sc.entries = sc.entries[:start]
				continue next
			}
			sc.entries = append(sc.entries, Entry{Key: k.Name, Value: v})
		}
		sc.descs = append(sc.descs, sc.entries[start:len(sc.entries):len(sc.entries)])
	}
	return sc.descs
}

// reset drops the request's strings so that the pool does not pin them.
func (sc *scratch) reset() {
	clear(sc.entries[:cap(sc.entries)])
	clear(sc.descs[:cap(sc.descs)])
}
