package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// AdminOptions configures the HTTP admin handler.
type AdminOptions struct {
	// Gatherer serves /metrics. Required.
	Gatherer prometheus.Gatherer
	// Ready answers /readyz: nil means ready. Required.
	Ready func(context.Context) error
	// Config returns the effective configuration for /config (YAML,
	// secrets already redacted). Required.
	Config func() []byte
	// ReadyTimeout bounds one /readyz check (default 2s).
	ReadyTimeout time.Duration
	// API, when set, serves /api/v1/ (traffic insight,
	// insight.Recorder.Handler).
	API http.Handler
}

// NewAdmin returns the HTTP admin handler:
//
//   - GET /healthz: 200 "ok" while the process serves HTTP;
//   - GET /readyz: 200 "ready", or 503 with the reason;
//   - GET /metrics: Prometheus metrics of o.Gatherer;
//   - GET /config: the effective configuration as YAML;
//   - /api/v1/: o.API, when set (traffic insight).
func NewAdmin(o AdminOptions) http.Handler {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Second
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), o.ReadyTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := o.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /config", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
		_, _ = w.Write(o.Config())
	})
	if o.API != nil {
		mux.Handle("/api/v1/", o.API)
	}
	return mux
}
