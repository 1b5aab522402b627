package xdsrules

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the subscription's metrics. A nil *Metrics records nothing.
type Metrics struct {
	applied, rejected prometheus.Counter
	streamFailures    prometheus.Counter
	up                prometheus.Gauge
	lastApplied       prometheus.Gauge
}

// NewMetrics registers the metrics with reg. It fails if they are
// registered there already.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	updates := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "extauthz_xds_updates_total",
		Help: "xDS rule updates received, by result: applied (ACK) or rejected (NACK; the previous rules kept serving).",
	}, []string{"result"})
	m := &Metrics{
		applied:  updates.WithLabelValues("applied"),
		rejected: updates.WithLabelValues("rejected"),
		streamFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "extauthz_xds_stream_failures_total",
			Help: "xDS streams to the management server that ended or could not be opened (each followed by a reconnection).",
		}),
		up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "extauthz_xds_connected",
			Help: "1 while the xDS stream to the management server is open, else 0.",
		}),
		lastApplied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "extauthz_xds_last_applied_timestamp_seconds",
			Help: "When the last xDS rule update was applied (Unix time; 0: none yet).",
		}),
	}
	for _, c := range []prometheus.Collector{updates, m.streamFailures, m.up, m.lastApplied} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("xdsrules: register the extauthz_xds_* metrics: %w (one subscription per Prometheus Registerer)", err)
		}
	}
	return m, nil
}

func (m *Metrics) update(ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.applied.Inc()
		m.lastApplied.SetToCurrentTime()
		return
	}
	m.rejected.Inc()
}

func (m *Metrics) streamFailed() {
	if m != nil {
		m.streamFailures.Inc()
	}
}

func (m *Metrics) connected(up bool) {
	if m == nil {
		return
	}
	if up {
		m.up.Set(1)
	} else {
		m.up.Set(0)
	}
}
