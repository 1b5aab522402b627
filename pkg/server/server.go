package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync/atomic"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/insight"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/logging"
)

// HeaderSettings configures the rate-limit response headers, which Envoy
// adds to admitted and refused responses alike; they describe the most
// restrictive matched limit. Zero values are the documented defaults. It is
// the server file's response_headers section (config embeds it).
type HeaderSettings struct {
	// Enabled adds the limit/remaining/reset headers of the most restrictive
	// descriptor to every answer that counted something, and Retry-After to
	// OVER_LIMIT answers (default false).
	Enabled bool `yaml:"enabled"`
	// LimitHeader, RemainingHeader and ResetHeader name the three headers
	// (defaults X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset).
	LimitHeader     string `yaml:"limit_header"`
	RemainingHeader string `yaml:"remaining_header"`
	ResetHeader     string `yaml:"reset_header"`
	// Draft also adds the IETF draft (-08 and later) RateLimit-Policy and
	// RateLimit fields, one list item per counted limit.
	Draft bool `yaml:"draft"`
}

// WithDefaults returns h with the default header names filled in.
func (h HeaderSettings) WithDefaults() HeaderSettings {
	for _, f := range h.names() {
		if *f.v == "" {
			*f.v = f.def
		}
	}
	return h
}

// Validate checks the header names of h (defaults filled in): each must be
// an HTTP field name and the three must differ. Errors are *field.Error
// values with paths such as "limit_header".
func (h *HeaderSettings) Validate() error {
	var errs []error
	for _, f := range h.names() {
		if !httpguts.ValidHeaderFieldName(*f.v) {
			errs = append(errs, field.Errorf(f.name, "%q is not a valid header name: use letters, digits and - (e.g. %s)", *f.v, f.def))
		}
	}
	if strings.EqualFold(h.LimitHeader, h.RemainingHeader) || strings.EqualFold(h.LimitHeader, h.ResetHeader) ||
		strings.EqualFold(h.RemainingHeader, h.ResetHeader) {
		errs = append(errs, field.Errorf("", "limit_header, remaining_header and reset_header must be three different names"))
	}
	return errors.Join(errs...)
}

type headerName struct {
	name string
	v    *string
	def  string
}

func (h *HeaderSettings) names() []headerName {
	return []headerName{
		{"limit_header", &h.LimitHeader, DefaultLimitHeader},
		{"remaining_header", &h.RemainingHeader, DefaultRemainingHeader},
		{"reset_header", &h.ResetHeader, DefaultResetHeader},
	}
}

// DecisionSettings are envoyproxy/ratelimit's server-wide decision
// switches, all off by default: the server file's top-level shadow_mode,
// quota_mode and response_dynamic_metadata keys (config embeds the struct
// inline), the reference's SHADOW_MODE, QUOTA_MODE and
// RESPONSE_DYNAMIC_METADATA.
type DecisionSettings struct {
	// ShadowMode answers every OVER_LIMIT decision OK, counted in
	// extauthz_shadow_mode_answers_total; descriptor statuses still say
	// OVER_LIMIT, and the counters count as usual.
	ShadowMode bool `yaml:"shadow_mode"`
	// QuotaMode puts every descriptor of a request (but unlimited ones) in
	// quota mode, as a rule's quota_mode does its own: the request is
	// refused only when every one of them is over its limit.
	QuotaMode bool `yaml:"quota_mode"`
	// ResponseDynamicMetadata fills RateLimitResponse.dynamic_metadata
	// with the domain, the request's descriptors and hits_addend, and the
	// metadata of the rules whose descriptors passed (see
	// dynamicMetadata).
	ResponseDynamicMetadata bool `yaml:"response_dynamic_metadata"`
}

// Settings are the request-handling options a Snapshot carries next to its
// rules. Zero values are the documented defaults.
type Settings struct {
	// CountMode is passed to every Store.Take (default CountAll).
	CountMode limiter.Mode
	// NearLimitRatio is the used/limit ratio from which an admitted decision
	// is reported as near_limit in metrics (default 0.8; must be in (0, 1]).
	NearLimitRatio float64
	// Headers configures response headers.
	Headers HeaderSettings
	// UpstreamHeaders configures the same headers added to the request
	// Envoy forwards upstream (RateLimitResponse.request_headers_to_add),
	// so the application learns its client's limit and remaining quota.
	UpstreamHeaders HeaderSettings
	// Decisions holds the server-wide shadow and quota modes and dynamic
	// metadata.
	Decisions DecisionSettings
	// OverLimitBody adds a small JSON raw_body naming the refusing limit to
	// OVER_LIMIT answers (Envoy sends it as the 429 body).
	OverLimitBody bool
	// Failure decides, per domain, the answer when the store cannot
	// decide: gRPC UNAVAILABLE (chain.FailEnvoy, the default, so that
	// Envoy's failure_mode_deny applies), OK (chain.FailOpen) or OVER_LIMIT
	// (chain.FailClosed).
	Failure chain.FailurePolicy
	// FailClosedRetryAfter is the reset and retry time reported with a
	// fail-closed answer (default 1s; e.g. the breaker's open time).
	FailClosedRetryAfter time.Duration
	// Bounds limit request sizes (defaults: descriptor.Bounds); a request
	// beyond them answers InvalidArgument naming the bound.
	Bounds descriptor.Bounds
	// Authz configures the ext_authz Check API (see Authz); nil when Check
	// is not served. It is part of the snapshot so that a reload swaps the
	// extractor together with the rules its descriptors must match.
	Authz *AuthzSettings
}

// DefaultNearLimitRatio is the NearLimitRatio of Settings that leave it 0.
const DefaultNearLimitRatio = 0.8

// Default header names.
const (
	DefaultLimitHeader     = "X-RateLimit-Limit"
	DefaultRemainingHeader = "X-RateLimit-Remaining"
	DefaultResetHeader     = "X-RateLimit-Reset"
)

// withDefaults returns s with zero values replaced by defaults, or an error
// naming the first invalid setting.
func (s Settings) withDefaults() (Settings, error) {
	if s.CountMode > limiter.CountIfAllAllowed {
		return s, fmt.Errorf("server: unknown count mode %d", s.CountMode)
	}
	switch {
	case s.NearLimitRatio == 0:
		s.NearLimitRatio = DefaultNearLimitRatio
	case math.IsNaN(s.NearLimitRatio) || s.NearLimitRatio <= 0 || s.NearLimitRatio > 1:
		return s, fmt.Errorf("server: near limit ratio %v: want a number in (0, 1]", s.NearLimitRatio)
	}
	if s.Failure.Default > chain.FailClosed {
		return s, fmt.Errorf("server: unknown failure mode %d", s.Failure.Default)
	}
	for d, m := range s.Failure.Domains {
		if m > chain.FailClosed {
			return s, fmt.Errorf("server: domain %q: unknown failure mode %d", d, m)
		}
	}
	switch {
	case s.FailClosedRetryAfter == 0:
		s.FailClosedRetryAfter = time.Second
	case s.FailClosedRetryAfter < 0:
		return s, fmt.Errorf("server: fail-closed retry after %v is negative", s.FailClosedRetryAfter)
	}
	s.Headers = s.Headers.WithDefaults()
	if err := s.Headers.Validate(); err != nil {
		return s, fmt.Errorf("server: a response header is not a valid HTTP field name or repeats another: %w", err)
	}
	s.UpstreamHeaders = s.UpstreamHeaders.WithDefaults()
	if err := s.UpstreamHeaders.Validate(); err != nil {
		return s, fmt.Errorf("server: an upstream header is not a valid HTTP field name or repeats another: %w", err)
	}
	s.Bounds = s.Bounds.WithDefaults()
	if s.Authz != nil {
		st, err := s.Authz.validate()
		if err != nil {
			return s, err
		}
		s.Authz = &st // a copy: the snapshot never changes under a request
	}
	return s, nil
}

// Snapshot is an immutable set of rules with the settings that go with them:
// everything a request reads (rules, response headers, bounds, failure
// modes, and the Check API's extractor and upstream headers). The Server
// and Authz read the current snapshot once per request, so a reload
// (Server.Swap) never changes the rules or settings under an in-flight
// request, nor pairs the settings of one config with the rules of another.
type Snapshot struct {
	rules    *descriptor.Set
	settings Settings
	config   []byte
}

// NewSnapshot validates settings, fills in their defaults and returns a
// snapshot of rules. config is the effective configuration rendered for
// /config (already redacted); it may be nil.
func NewSnapshot(rules *descriptor.Set, settings Settings, config []byte) (*Snapshot, error) {
	if rules == nil {
		return nil, errors.New("server: snapshot without rules")
	}
	s, err := settings.withDefaults()
	if err != nil {
		return nil, err
	}
	return &Snapshot{rules: rules, settings: s, config: config}, nil
}

// Rules returns the snapshot's rule set.
func (s *Snapshot) Rules() *descriptor.Set { return s.rules }

// Settings returns the snapshot's settings, defaults filled in.
func (s *Snapshot) Settings() Settings { return s.settings }

// Config returns the effective configuration given to NewSnapshot.
func (s *Snapshot) Config() []byte { return s.config }

// Options configures a Server.
type Options struct {
	// Store counts hits: the default chain. Required.
	Store limiter.Store
	// Chains are the named backend chains that rules route to
	// (descriptor.Rule.Chain; see route.go), by name. New refuses a
	// snapshot whose rules name a chain missing here (CheckRoutes).
	Chains map[string]limiter.Store
	// Metrics records request and decision metrics (see NewMetrics; nil:
	// recorded on a registry of the server's own, exported nowhere).
	Metrics *Metrics
	// Logger receives rate-limited warnings (default slog.Default()).
	Logger *slog.Logger
	// Insight, when set, records every decided descriptor (traffic
	// insight: top offenders, rule history).
	Insight *insight.Recorder
	// Traced says calls may carry a span (pkg/tracing's interceptor): the
	// server then adds the decision to it (trace.go). false, the default,
	// costs nothing.
	Traced bool
}

// Server answers Envoy's RateLimitService over the current Snapshot. It is
// safe for concurrent use.
type Server struct {
	rlsv3.UnimplementedRateLimitServiceServer

	live    atomic.Pointer[live]
	store   limiter.Store
	chains  map[string]limiter.Store
	metrics *Metrics
	log     *slog.Logger
	warn    logging.Throttle // store failures: one warning per logging.DefaultEvery
	insight *insight.Recorder
	traced  bool
}

var _ rlsv3.RateLimitServiceServer = (*Server)(nil)

// New returns a Server answering from snap.
func New(opts Options, snap *Snapshot) (*Server, error) {
	switch {
	case opts.Store == nil:
		return nil, errors.New("server: no store")
	case snap == nil:
		return nil, errors.New("server: no snapshot")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Metrics == nil {
		m, err := NewMetrics(prometheus.NewRegistry())
		if err != nil {
			return nil, err
		}
		opts.Metrics = m
	}
	s := &Server{store: opts.Store, chains: opts.Chains, metrics: opts.Metrics, log: opts.Logger, insight: opts.Insight, traced: opts.Traced}
	if err := s.CheckRoutes(snap); err != nil {
		return nil, err
	}
	s.Swap(snap)
	return s, nil
}

// live is what a request loads: the snapshot and the metric handles cached
// for its rules. A fresh cache per snapshot releases the rules of an old
// snapshot with it; the counters themselves live in Metrics, so a reload
// resets nothing.
type live struct {
	snap  *Snapshot
	cache *metricCache
}

// Swap makes snap the snapshot that new requests use and returns the
// previous one (nil the first time). Requests already running finish on the
// snapshot they started with.
func (s *Server) Swap(snap *Snapshot) *Snapshot {
	old := s.live.Swap(&live{snap: snap, cache: newMetricCache(s.metrics)})
	if old == nil {
		return nil
	}
	return old.snap
}

// Snapshot returns the snapshot new requests use.
func (s *Server) Snapshot() *Snapshot { return s.live.Load().snap }

// Register registers the RateLimitService on g.
func (s *Server) Register(g *grpc.Server) {
	rlsv3.RegisterRateLimitServiceServer(g, s)
}

// Ready reports whether the server can answer: it has rules, and the store,
// when it can tell (an optional Ready(ctx) error method), is usable.
func (s *Server) Ready(ctx context.Context) error {
	if s.live.Load() == nil {
		return errors.New("no rules loaded")
	}
	if r, ok := s.store.(interface{ Ready(context.Context) error }); ok {
		if err := r.Ready(ctx); err != nil {
			return fmt.Errorf("store: %w", err)
		}
	}
	return nil
}
