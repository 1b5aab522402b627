package server

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/pkg/backends/chain"
)

// backendBuckets are the buckets of backend call and probe durations: a
// loopback Redis answers in about 100µs, a remote one in a few ms, and
// calls are cut at the chain's call timeout (10ms by default) and probes at
// the health timeout (100ms).
var backendBuckets = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25}

// Results of a health probe (the result label of
// extauthz_backend_probes_total).
const (
	probeSuccess = "success"
	probeFailure = "failure"
)

// numStates and numReasons size the per-backend arrays of cached series.
const (
	numStates  = int(chain.StateOpen) + 1
	numReasons = int(chain.ReasonError) + 1
)

// BackendMetrics holds the metrics of the backend chain (breakers,
// failovers, health probes) and of remote backends (calls, errors, Redis
// scripts and local cache). Build it once per registry with
// NewBackendMetrics; it is safe for concurrent use. Failure-mode answers,
// given when no backend could decide, are counted by Metrics
// (extauthz_store_failures_total).
type BackendMetrics struct {
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	failovers   *prometheus.CounterVec
	probeTime   *prometheus.HistogramVec
	probes      *prometheus.CounterVec
	callTime    *prometheus.HistogramVec
	errors      *prometheus.CounterVec
	scriptLoads *prometheus.CounterVec
	cacheHits   *prometheus.CounterVec
	cleaned     *prometheus.CounterVec
	reg         prometheus.Registerer
}

// NewBackendMetrics registers the backend metrics with reg:
//
//   - extauthz_backend_breaker_state{backend,state} (gauge): 1 for the
//     current state of each remote backend's circuit breaker (closed,
//     half_open or open), 0 for the other two. An open breaker shows as
//     half_open once its open time is over and a probe or call noticed.
//   - extauthz_backend_breaker_transitions_total{backend,from,to}
//     (counter): breaker state changes.
//   - extauthz_backend_failovers_total{from,to,reason} (counter): calls
//     that moved on from backend from to the next backend to; reason is
//     open (breaker not closed: skipped uncalled), timeout or error.
//   - extauthz_backend_probe_duration_seconds{backend} (histogram): active
//     health probes (Redis PING).
//   - extauthz_backend_probes_total{backend,result} (counter): health
//     probes by result, success or failure.
//   - extauthz_backend_request_duration_seconds{backend} (histogram): round
//     trips to a remote backend (one per Take; calls answered by the local
//     cache are not timed), failed ones included.
//   - extauthz_backend_errors_total{backend,kind} (counter): failed round
//     trips by kind (redisstore.ErrorKind: canceled, timeout, connection,
//     script, server, reply, invalid, other).
//   - extauthz_redis_script_loads_total{backend} (counter): times the Lua
//     script was sent to Redis in full: at startup, then after each
//     NOSCRIPT (script cache flushed, restart, failover to a new master).
//   - extauthz_redis_local_cache_hits_total{backend} (counter): requests
//     refused by the local over-limit cache without a round trip.
//   - extauthz_postgres_rows_cleaned_total{backend} (counter): expired
//     counter rows deleted by the background cleanup.
//   - extauthz_postgres_pool_connections{backend,state} (gauge): the
//     connection pool, read at each scrape: acquired (in use), idle, total
//     and max.
//
// PostgreSQL round trips and errors share the backend series above (the
// error kinds are pgstore.ErrorKind's: canceled, timeout, connection,
// schema, server, reply, invalid, other).
//
// It fails if reg already holds metrics of these names.
func NewBackendMetrics(reg prometheus.Registerer) (*BackendMetrics, error) {
	f := &factory{reg: reg}
	m := &BackendMetrics{
		state: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "extauthz_backend_breaker_state",
			Help: "1 for the current circuit-breaker state of each remote backend (closed, half_open, open), 0 for the others.",
		}, []string{"backend", "state"}),
		transitions: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_backend_breaker_transitions_total",
			Help: "Circuit-breaker state changes, by backend and from and to state.",
		}, []string{"backend", "from", "to"}),
		failovers: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_backend_failovers_total",
			Help: "Calls that moved on from one backend to the next, by reason (open, timeout, error).",
		}, []string{"from", "to", "reason"}),
		probeTime: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "extauthz_backend_probe_duration_seconds",
			Help:    "Time of active health probes, by backend.",
			Buckets: backendBuckets,
		}, []string{"backend"}),
		probes: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_backend_probes_total",
			Help: "Active health probes, by backend and result (success, failure).",
		}, []string{"backend", "result"}),
		callTime: f.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "extauthz_backend_request_duration_seconds",
			Help:    "Time of round trips to a remote backend, failed ones included.",
			Buckets: backendBuckets,
		}, []string{"backend"}),
		errors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_backend_errors_total",
			Help: "Failed round trips to a remote backend, by kind.",
		}, []string{"backend", "kind"}),
		scriptLoads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_redis_script_loads_total",
			Help: "Times the Lua script was sent to a Redis backend in full (at startup, then after NOSCRIPT).",
		}, []string{"backend"}),
		cacheHits: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_redis_local_cache_hits_total",
			Help: "Requests answered by a Redis backend's local over-limit cache without a round trip.",
		}, []string{"backend"}),
		cleaned: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_postgres_rows_cleaned_total",
			Help: "Expired counter rows deleted by the PostgreSQL background cleanup.",
		}, []string{"backend"}),
		reg: reg,
	}
	return m, f.err
}

// chainSeries are the series of one chain backend that its hooks touch,
// resolved once so that a hook on the request path looks up no label.
type chainSeries struct {
	state [numStates]prometheus.Gauge // nil for a local backend (no breaker)
	// next is the backend that calls fail over to, and failovers its
	// counters by reason ("" and nil for the last backend).
	next      string
	failovers [numReasons]prometheus.Counter
}

// ChainHooks returns chain hooks that feed the breaker, failover and probe
// metrics of a chain of backends (in chain order, as given to chain.New).
// It creates their series at zero, each remote backend's breaker closed, so
// that rates and alerts see them before the first event.
func (m *BackendMetrics) ChainHooks(backends []chain.Backend) chain.Hooks {
	series := make(map[string]*chainSeries, len(backends))
	for i, b := range backends {
		s := &chainSeries{}
		if !b.Local {
			for st := range numStates {
				s.state[st] = m.state.WithLabelValues(b.Name, chain.State(st).String())
			}
			s.state[chain.StateClosed].Set(1)
			m.probes.WithLabelValues(b.Name, probeSuccess)
			m.probes.WithLabelValues(b.Name, probeFailure)
		}
		if i+1 < len(backends) {
			s.next = backends[i+1].Name
			for r := range numReasons {
				s.failovers[r] = m.failovers.WithLabelValues(b.Name, s.next, chain.Reason(r).String())
			}
		}
		series[b.Name] = s
	}
	// series is read-only from here on: the hooks read it without a lock.
	return chain.Hooks{
		StateChange: func(backend string, from, to chain.State) {
			m.transitions.WithLabelValues(backend, from.String(), to.String()).Inc()
			s := series[backend]
			if s == nil || s.state[0] == nil || int(to) >= numStates {
				m.state.WithLabelValues(backend, from.String()).Set(0)
				m.state.WithLabelValues(backend, to.String()).Set(1)
				return
			}
			for st, g := range s.state {
				if chain.State(st) == to {
					g.Set(1)
				} else {
					g.Set(0)
				}
			}
		},
		Failover: func(from, to string, why chain.Reason) {
			if s := series[from]; s != nil && s.next == to && int(why) < numReasons {
				s.failovers[why].Inc()
				return
			}
			m.failovers.WithLabelValues(from, to, why.String()).Inc()
		},
		Probe: func(backend string, latency time.Duration, err error) {
			m.probeTime.WithLabelValues(backend).Observe(latency.Seconds())
			result := probeSuccess
			if err != nil {
				result = probeFailure
			}
			m.probes.WithLabelValues(backend, result).Inc()
		},
	}
}

// RedisMetrics records the calls of one Redis backend; its methods fit
// redisstore.Options.OnCall (through redisstore.ErrorKind), OnScriptLoad
// and OnCacheHit. It is safe for concurrent use.
type RedisMetrics struct {
	duration    prometheus.Observer
	errors      *prometheus.CounterVec // curried with the backend
	scriptLoads prometheus.Counter
	cacheHits   prometheus.Counter
}

// Redis returns the recorder of the Redis backend named backend (its name
// in the chain, e.g. "redis"), with its script-load and cache-hit series
// created at zero.
func (m *BackendMetrics) Redis(backend string) *RedisMetrics {
	return &RedisMetrics{
		duration:    m.callTime.WithLabelValues(backend),
		errors:      m.errors.MustCurryWith(prometheus.Labels{"backend": backend}),
		scriptLoads: m.scriptLoads.WithLabelValues(backend),
		cacheHits:   m.cacheHits.WithLabelValues(backend),
	}
}

// Call records one round trip that took d and failed with an error of kind
// ("" for success). kind must come from a bounded set such as
// redisstore.ErrorKind's.
func (r *RedisMetrics) Call(d time.Duration, kind string) {
	r.duration.Observe(d.Seconds())
	if kind != "" {
		r.errors.WithLabelValues(kind).Inc()
	}
}

// ScriptLoad records the script sent in full once.
func (r *RedisMetrics) ScriptLoad() { r.scriptLoads.Inc() }

// CacheHits records n requests answered by the local over-limit cache.
func (r *RedisMetrics) CacheHits(n int) { r.cacheHits.Add(float64(n)) }

// PostgresMetrics records the calls and cleanups of one PostgreSQL
// backend; Call fits pgstore.Settings.OnCall (through pgstore.ErrorKind)
// and Cleaned its OnCleanup. It is safe for concurrent use.
type PostgresMetrics struct {
	duration prometheus.Observer
	errors   *prometheus.CounterVec // curried with the backend
	cleaned  prometheus.Counter
}

// PoolUsage is a PostgreSQL pool's connection counts.
type PoolUsage struct {
	Acquired, Idle, Total, Max int32
}

// Postgres returns the recorder of the PostgreSQL backend named backend,
// with its cleanup series created at zero, and registers its pool gauges,
// which call pool at each scrape. It fails if the gauges of backend are
// already registered.
func (m *BackendMetrics) Postgres(backend string, pool func() PoolUsage) (*PostgresMetrics, error) {
	for _, g := range []struct {
		state string
		get   func(PoolUsage) int32
	}{
		{"acquired", func(u PoolUsage) int32 { return u.Acquired }},
		{"idle", func(u PoolUsage) int32 { return u.Idle }},
		{"total", func(u PoolUsage) int32 { return u.Total }},
		{"max", func(u PoolUsage) int32 { return u.Max }},
	} {
		err := m.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "extauthz_postgres_pool_connections",
			Help:        "Connections of a PostgreSQL backend's pool, by state (acquired, idle, total, max).",
			ConstLabels: prometheus.Labels{"backend": backend, "state": g.state},
		}, func() float64 { return float64(g.get(pool())) }))
		if err != nil {
			return nil, fmt.Errorf("server: postgres pool metrics of %s: %w", backend, err)
		}
	}
	return &PostgresMetrics{
		duration: m.callTime.WithLabelValues(backend),
		errors:   m.errors.MustCurryWith(prometheus.Labels{"backend": backend}),
		cleaned:  m.cleaned.WithLabelValues(backend),
	}, nil
}

// Call records one round trip that took d and failed with an error of kind
// ("" for success), a value of pgstore.ErrorKind.
func (p *PostgresMetrics) Call(d time.Duration, kind string) {
	p.duration.Observe(d.Seconds())
	if kind != "" {
		p.errors.WithLabelValues(kind).Inc()
	}
}

// Cleaned records rows deleted by one cleanup batch.
func (p *PostgresMetrics) Cleaned(rows int64) {
	if rows > 0 {
		p.cleaned.Add(float64(rows))
	}
}

// LeaseUsage is what a leasing layer (pkg/lease) has done so far.
type LeaseUsage struct {
	// Local is the requests answered from a block; Blocks and Refused the
	// blocks the backend granted and refused; Evicted the keys dropped
	// from a full table; Returned the unused hits of blocks given back;
	// Keys the keys leased now.
	Local, Blocks, Refused, Evicted, Returned, Keys int64
}

// Lease registers the leasing metrics of the backend named backend, which
// call usage at each scrape:
//
//   - extauthz_lease_local_total{backend} (counter): requests answered
//     from a leased block, without a call to the backend.
//   - extauthz_lease_blocks_total{backend,result} (counter): block takes,
//     granted or refused.
//   - extauthz_lease_evictions_total{backend} (counter): leased keys
//     dropped from a full table.
//   - extauthz_lease_returned_total{backend} (counter): unused hits of
//     blocks given back to the backend (idle and evicted keys, shutdown).
//   - extauthz_lease_keys{backend} (gauge): keys leased now.
//
// It fails if they are already registered for backend.
func (m *BackendMetrics) Lease(backend string, usage func() LeaseUsage) error {
	for _, c := range []struct {
		name, help string
		labels     prometheus.Labels
		gauge      bool
		get        func(LeaseUsage) int64
	}{
		{"extauthz_lease_local_total", "Requests answered from a leased block of a hot key's quota, without a backend call.", nil, false, func(u LeaseUsage) int64 { return u.Local }},
		{"extauthz_lease_blocks_total", "Blocks of a hot key's quota asked of the backend, by result (granted, refused).", prometheus.Labels{"result": "granted"}, false, func(u LeaseUsage) int64 { return u.Blocks }},
		{"extauthz_lease_blocks_total", "Blocks of a hot key's quota asked of the backend, by result (granted, refused).", prometheus.Labels{"result": "refused"}, false, func(u LeaseUsage) int64 { return u.Refused }},
		{"extauthz_lease_evictions_total", "Leased keys dropped from a full lease table.", nil, false, func(u LeaseUsage) int64 { return u.Evicted }},
		{"extauthz_lease_returned_total", "Unused hits of leased blocks given back to the backend (idle and evicted keys, shutdown).", nil, false, func(u LeaseUsage) int64 { return u.Returned }},
		{"extauthz_lease_keys", "Keys leased now.", nil, true, func(u LeaseUsage) int64 { return u.Keys }},
	} {
		labels := prometheus.Labels{"backend": backend}
		for k, v := range c.labels {
			labels[k] = v
		}
		get := c.get
		f := func() float64 { return float64(get(usage())) }
		var col prometheus.Collector
		if c.gauge {
			col = prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: c.name, Help: c.help, ConstLabels: labels}, f)
		} else {
			col = prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help, ConstLabels: labels}, f)
		}
		if err := m.reg.Register(col); err != nil {
			return fmt.Errorf("server: lease metrics of %s: %w", backend, err)
		}
	}
	return nil
}
