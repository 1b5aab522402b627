// Package opsmetrics exports extauthz's operational metrics to Prometheus:
// configuration reloads, the TLS certificate being served, and the size and
// evictions of memory backends. The reload and certs packages, and the
// stores, import no metrics library; the composition root feeds their
// callbacks and counters in here.
package opsmetrics

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Results of a reload (the result label of extauthz_config_reloads_total).
const (
	ResultSuccess   = "success"   // a changed configuration was loaded and swapped in
	ResultUnchanged = "unchanged" // the files loaded to the configuration in service
	ResultFailure   = "failure"   // the files did not load; the old configuration serves
)

// Metrics holds the operational metrics. Build it once per registry with
// New; its methods are safe for concurrent use.
type Metrics struct {
	reg prometheus.Registerer
	now func() time.Time

	reloads     *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	info        *prometheus.GaugeVec
	restart     prometheus.Gauge
	certExpiry  prometheus.Gauge
	certReloads *prometheus.CounterVec

	mu   sync.Mutex
	hash string // the info series set
}

// New registers the metrics with reg:
//
//   - extauthz_config_reloads_total{result} (counter): reloads by result,
//     success, unchanged or failure.
//   - extauthz_config_last_reload_success_timestamp_seconds (gauge): when
//     the configuration in service was loaded (at start, then at each
//     successful reload).
//   - extauthz_config_info{hash} (gauge, always 1): the SHA-256 of the
//     effective configuration in service (reload.Hash), to compare replicas.
//   - extauthz_config_restart_required (gauge): 1 while the configuration
//     in service differs from the running one in settings that apply only
//     on restart, 0 otherwise.
//   - extauthz_tls_certificate_expiry_timestamp_seconds (gauge): when the
//     served certificate expires (only with TLS).
//   - extauthz_tls_certificate_reloads_total{result} (counter): certificate
//     reloads, success or failure (only with TLS).
//
// now is the clock (nil: time.Now). It panics, as promauto does, if reg
// already holds metrics of these names.
func New(reg prometheus.Registerer, now func() time.Time) *Metrics {
	if now == nil {
		now = time.Now
	}
	f := promauto.With(reg)
	return &Metrics{
		reg: reg,
		now: now,
		reloads: f.NewCounterVec(prometheus.CounterOpts{
			Name: "extauthz_config_reloads_total",
			Help: "Configuration reloads, by result (success, unchanged, failure).",
		}, []string{"result"}),
		lastSuccess: f.NewGauge(prometheus.GaugeOpts{
			Name: "extauthz_config_last_reload_success_timestamp_seconds",
			Help: "Unix time the configuration in service was loaded.",
		}),
		info: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "extauthz_config_info",
			Help: "Always 1; hash is the SHA-256 of the effective configuration in service.",
		}, []string{"hash"}),
		restart: f.NewGauge(prometheus.GaugeOpts{
			Name: "extauthz_config_restart_required",
			Help: "1 while reloaded settings that apply only on restart differ from the running ones.",
		}),
	}
}

// ConfigLoaded records the configuration in service at start.
func (m *Metrics) ConfigLoaded(hash string) {
	m.setHash(hash)
	m.lastSuccess.Set(float64(m.now().UnixNano()) / 1e9)
	// Create the series at zero so that rate() and alerts see them.
	for _, r := range []string{ResultSuccess, ResultUnchanged, ResultFailure} {
		m.reloads.WithLabelValues(r)
	}
}

// ConfigReloaded records a successful reload to the configuration of hash;
// restart lists the settings that differ from the running ones but need a
// restart (reload.RestartRequired against the configuration the process
// started with).
func (m *Metrics) ConfigReloaded(hash string, restart []string) {
	m.reloads.WithLabelValues(ResultSuccess).Inc()
	m.setHash(hash)
	m.lastSuccess.Set(float64(m.now().UnixNano()) / 1e9)
	if len(restart) > 0 {
		m.restart.Set(1)
	} else {
		m.restart.Set(0)
	}
}

// ConfigUnchanged records a reload that found nothing new.
func (m *Metrics) ConfigUnchanged() { m.reloads.WithLabelValues(ResultUnchanged).Inc() }

// ConfigReloadFailed records a reload that failed.
func (m *Metrics) ConfigReloadFailed() { m.reloads.WithLabelValues(ResultFailure).Inc() }

func (m *Metrics) setHash(hash string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hash != "" && m.hash != hash {
		m.info.DeleteLabelValues(m.hash)
	}
	m.hash = hash
	m.info.WithLabelValues(hash).Set(1)
}

// EnableTLS registers the certificate metrics, for a server with TLS.
func (m *Metrics) EnableTLS() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.certExpiry != nil {
		return nil
	}
	expiry := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "extauthz_tls_certificate_expiry_timestamp_seconds",
		Help: "Unix time the served TLS certificate expires.",
	})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_tls_certificate_reloads_total",
		Help: "TLS certificate reloads from disk, by result (success, failure).",
	}, []string{"result"})
	for _, c := range []prometheus.Collector{expiry, reloads} {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("opsmetrics: register TLS metrics: %w", err)
		}
	}
	reloads.WithLabelValues(ResultSuccess)
	reloads.WithLabelValues(ResultFailure)
	m.certExpiry, m.certReloads = expiry, reloads
	return nil
}

// CertLoaded records the certificate served from now on, expiring at
// notAfter; reloaded is false for the one loaded at start.
func (m *Metrics) CertLoaded(notAfter time.Time, reloaded bool) {
	m.mu.Lock()
	expiry, reloads := m.certExpiry, m.certReloads
	m.mu.Unlock()
	if expiry == nil {
		return
	}
	expiry.Set(float64(notAfter.Unix()))
	if reloaded {
		reloads.WithLabelValues(ResultSuccess).Inc()
	}
}

// CertReloadFailed records changed certificate files that did not load.
func (m *Metrics) CertReloadFailed() {
	m.mu.Lock()
	reloads := m.certReloads
	m.mu.Unlock()
	if reloads != nil {
		reloads.WithLabelValues(ResultFailure).Inc()
	}
}

// MemoryStore is what the memory backend metrics read: memstore.Store's
// Len and Evictions.
type MemoryStore interface {
	Len() int
	Evictions() uint64
}

// AddMemoryBackend registers the metrics of the memory backend named
// backend (as in the chain, e.g. "memory"), read at each scrape:
//
//   - extauthz_memory_backend_keys{backend} (gauge): counters held.
//   - extauthz_memory_backend_evictions_total{backend} (counter):
//     unexpired counters evicted to make room for new keys.
func (m *Metrics) AddMemoryBackend(backend string, s MemoryStore) error {
	labels := prometheus.Labels{"backend": backend}
	keys := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "extauthz_memory_backend_keys",
		Help:        "Counters held by a memory backend (expired ones included until swept).",
		ConstLabels: labels,
	}, func() float64 { return float64(s.Len()) })
	evictions := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "extauthz_memory_backend_evictions_total",
		Help:        "Unexpired counters a full memory backend evicted to make room for new keys.",
		ConstLabels: labels,
	}, func() float64 { return float64(s.Evictions()) })
	for _, c := range []prometheus.Collector{keys, evictions} {
		if err := m.reg.Register(c); err != nil {
			return fmt.Errorf("opsmetrics: register memory backend %q: %w", backend, err)
		}
	}
	return nil
}
