package server

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// apiID is the api label: which API answered.
type apiID uint8

const (
	apiRateLimit apiID = iota // envoy.service.ratelimit.v3.RateLimitService
	apiAuthz                  // envoy.service.auth.v3.Authorization
	apiJSON                   // the RateLimitService over HTTP: POST /json
	numAPIs
)

var apiNames = [numAPIs]string{"ratelimit", "authz", "json"}

// codeID is the code label of a request: the decision, or the gRPC error.
type codeID uint8

const (
	codeOK codeID = iota
	codeOverLimit
	codeInvalidArgument
	codeUnavailable
	codeDeadlineExceeded
	codeCanceled
	codeInternal
	numCodes
)

var codeNames = [numCodes]string{"ok", "over_limit", "invalid_argument", "unavailable", "deadline_exceeded", "canceled", "internal"}

// outcomeID is the outcome label of one rule decision.
type outcomeID uint8

const (
	outcomeOK        outcomeID = iota // admitted, below the near-limit ratio
	outcomeNearLimit                  // admitted, at or above the near-limit ratio
	outcomeOverLimit                  // refused
	outcomeShadow                     // a shadow_mode rule that would have refused
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "near_limit", "over_limit", "shadow"}

// failureID is the answer label of a failed store call.
type failureID uint8

const (
	failureUnavailable failureID = iota // failure mode envoy: gRPC UNAVAILABLE
	failureOpen                         // failure mode open: OK
	failureClosed                       // failure mode closed: OVER_LIMIT
	failureCanceled                     // the caller gave up (deadline or cancel)
	failureInternal                     // the store rejected the request
	numFailures
)

var failureNames = [numFailures]string{"unavailable", "ok", "over_limit", "canceled", "internal"}

// unknownDomain is the domain label of requests for a domain that has no
// rules (or none at all): request domains are client input and must not
// create series.
const unknownDomain = "_unknown"

// Metrics holds the server's Prometheus metrics. Build it once per registry
// with NewMetrics; it is safe for concurrent use.
type Metrics struct {
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	failures  *prometheus.CounterVec
	// shadowAnswers counts, by API, the refusals shadow_mode answered OK.
	shadowAnswers [numAPIs]prometheus.Counter

	// durations caches the histogram of each (api, code): few, known.
	durations [numAPIs][numCodes]atomic.Pointer[observer]
}

type observer struct{ prometheus.Observer }

// NewMetrics registers the server's metrics with reg:
//
//   - extauthz_requests_total{api,domain,code} (counter): answered requests.
//     api is ratelimit, authz or json (the RateLimitService over HTTP,
//     Server.JSONHandler); code is ok, over_limit, or the gRPC error (invalid_argument,
//     unavailable, deadline_exceeded, canceled, internal); domain is
//     "_unknown" for domains without rules.
//   - extauthz_request_duration_seconds{api,code} (histogram): handling
//     time, from the decoded request to the built answer.
//   - extauthz_rule_decisions_total{domain,rule,outcome} (counter): one per
//     counted descriptor; rule is the rule's path (with the descriptor's
//     values only for detailed_metric/value_to_metric rules); outcome is ok,
//     near_limit, over_limit or shadow.
//   - extauthz_store_failures_total{api,answer} (counter): requests whose
//     Store.Take failed, by the answer given: unavailable, ok or
//     over_limit (the failure mode), canceled (the caller gave up) or
//     internal (the store rejected the request).
//   - extauthz_shadow_mode_answers_total{api} (counter): requests that
//     would have been refused, answered OK because of shadow_mode (the
//     server-wide setting; shadow rules show as outcome shadow above).
//
// It fails if reg already holds metrics of these names (a second server on
// one Registerer: give each its own).
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	f := &factory{reg: reg}
	m := &Metrics{
		requests: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_requests_total",
			Help: "Requests answered, by API, domain and code (ok, over_limit or the gRPC error).",
		}, []string{"api", "domain", "code"}),
		duration: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "extauthz_request_duration_seconds",
			Help:    "Time to answer a request, by API and code.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .02, .05, .1, .25, 1},
		}, []string{"api", "code"}),
		decisions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_rule_decisions_total",
			Help: "Rule decisions, by domain, rule and outcome (ok, near_limit, over_limit, shadow).",
		}, []string{"domain", "rule", "outcome"}),
		failures: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_store_failures_total",
			Help: "Requests whose store call failed, by API and answer (unavailable, ok, over_limit, canceled, internal).",
		}, []string{"api", "answer"}),
	}
	shadow := f.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_shadow_mode_answers_total",
		Help: "Requests over a limit answered OK because shadow_mode is on, by API.",
	}, []string{"api"})
	for api := range numAPIs {
		m.shadowAnswers[api] = shadow.WithLabelValues(apiNames[api])
	}
	return m, f.err
}

// factory makes collectors and registers them with reg, keeping the first
// registration error where promauto would panic: a metric name taken twice
// is the caller's mistake to report, not a crash.
type factory struct {
	reg prometheus.Registerer
	err error
}

func (f *factory) register(c prometheus.Collector) {
	if err := f.reg.Register(c); err != nil && f.err == nil {
		f.err = fmt.Errorf("server: register metrics: %w (one server per Prometheus Registerer: give each its own)", err)
	}
}

// NewCounterVec, NewGaugeVec and NewHistogramVec are promauto's, without
// the panic.
func (f *factory) NewCounterVec(o prometheus.CounterOpts, labels []string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(o, labels)
	f.register(c)
	return c
}

func (f *factory) NewGaugeVec(o prometheus.GaugeOpts, labels []string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(o, labels)
	f.register(g)
	return g
}

func (f *factory) NewHistogramVec(o prometheus.HistogramOpts, labels []string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(o, labels)
	f.register(h)
	return h
}

// storeFailure counts one failed store call.
func (m *Metrics) storeFailure(api apiID, f failureID) {
	m.failures.WithLabelValues(apiNames[api], failureNames[f]).Inc()
}

// observeDuration returns the duration histogram of (api, code).
func (m *Metrics) observeDuration(api apiID, code codeID, seconds float64) {
	p := &m.durations[api][code]
	o := p.Load()
	if o == nil {
		o = &observer{m.duration.WithLabelValues(apiNames[api], codeNames[code])}
		p.Store(o)
	}
	o.Observe(seconds)
}

// metricCache hands out the counters of one snapshot's domains and rules
// without a lock or an allocation once a series is known: a copy-on-write
// map behind an atomic pointer, rebuilt under a mutex on a miss. Its keys
// are bounded by the snapshot's rules.
type metricCache struct {
	m         *Metrics
	requests  cow[requestKey]
	decisions cow[decisionKey]
	overrides cow[overrideKey]
}

type requestKey struct {
	api    apiID
	code   codeID
	domain string // a domain of the snapshot, or unknownDomain
}

type decisionKey struct {
	rule    *descriptor.Rule
	outcome outcomeID
}

// overrideKey keys the decisions of Envoy overrides, whose rules are built
// per request: by domain (a string of the snapshot's Set).
type overrideKey struct {
	domain  string
	outcome outcomeID
}

func newMetricCache(m *Metrics) *metricCache {
	return &metricCache{m: m}
}

// request counts one answered request.
func (c *metricCache) request(api apiID, domain string, code codeID) {
	k := requestKey{api: api, code: code, domain: domain}
	ctr, ok := c.requests.load(k)
	if !ok {
		k.domain = strings.Clone(domain) // the map outlives the request
		ctr = c.requests.store(k, c.m.requests.WithLabelValues(apiNames[api], k.domain, codeNames[code]))
	}
	ctr.Inc()
}

// decision counts one decision of rule r.
func (c *metricCache) decision(r *descriptor.Rule, outcome outcomeID) {
	k := decisionKey{rule: r, outcome: outcome}
	ctr, ok := c.decisions.load(k)
	if !ok {
		ctr = c.decisions.store(k, c.m.decisions.WithLabelValues(r.Domain, r.Path, outcomeNames[outcome]))
	}
	ctr.Inc()
}

// overrideDecision counts one decision of an override rule (Set.Override),
// labelled with its path, one per domain.
func (c *metricCache) overrideDecision(r *descriptor.Rule, outcome outcomeID) {
	k := overrideKey{domain: r.Domain, outcome: outcome}
	ctr, ok := c.overrides.load(k)
	if !ok {
		ctr = c.overrides.store(k, c.m.decisions.WithLabelValues(r.Domain, r.Path, outcomeNames[outcome]))
	}
	ctr.Inc()
}

// cow is a copy-on-write map of counters: lock-free reads, copying writes.
type cow[K comparable] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]prometheus.Counter]
}

func (c *cow[K]) load(k K) (prometheus.Counter, bool) {
	m := c.m.Load()
	if m == nil {
		return nil, false
	}
	v, ok := (*m)[k]
	return v, ok
}

// store adds k → v unless k is already there, and returns the stored value.
func (c *cow[K]) store(k K, v prometheus.Counter) prometheus.Counter {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.m.Load()
	var n map[K]prometheus.Counter
	if old == nil {
		n = make(map[K]prometheus.Counter, 8)
	} else {
		if cur, ok := (*old)[k]; ok {
			return cur
		}
		n = make(map[K]prometheus.Counter, len(*old)+1)
		for kk, vv := range *old {
			n[kk] = vv
		}
	}
	n[k] = v
	c.m.Store(&n)
	return v
}
