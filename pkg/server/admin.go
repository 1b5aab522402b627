package server

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/extauthz/extauthz/pkg/adminauth"
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
	// Access checks the credentials of requests (see adminauth.Settings); nil:
	// every path is open.
	Access *adminauth.Access
	// Dashboard serves the web dashboard at / and its files under
	// /assets/ (dashboard.Handler()); nil: no dashboard.
	Dashboard http.Handler
	// API serves /api/ (the traffic insight JSON API); nil: none.
	API http.Handler
	// JSON serves POST /json (Server.JSONHandler); nil: none.
	JSON http.Handler
}

// NewAdmin returns the HTTP admin handler:
//
//   - GET /healthz: 200 "ok" while the process serves HTTP;
//   - GET /readyz: 200 "ready", or 503 with the reason;
//   - GET /healthcheck: envoyproxy/ratelimit's health path, the same
//     check as /readyz answered as it does: 200 "OK", or 500 with the
//     reason;
//   - GET /metrics: Prometheus metrics of o.Gatherer;
//   - GET /config: the effective configuration as YAML;
//   - POST /json: o.JSON, when set;
//   - /api/: o.API, and GET / and /assets/: o.Dashboard, when set.
//
// With o.Access, the dashboard, /api/, /config and /json require a
// credential, and /metrics and the probes when their settings say so.
func NewAdmin(o AdminOptions) http.Handler {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 2 * time.Second
	}
	mux := http.NewServeMux()
	a := o.Access
	mux.Handle("GET /healthz", a.Guard(adminauth.Health, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})))
	mux.Handle("GET /readyz", a.Guard(adminauth.Health, readyHandler(o, http.StatusServiceUnavailable, "ready\n", "not ready: ")))
	mux.Handle("GET /healthcheck", a.Guard(adminauth.Health, readyHandler(o, http.StatusInternalServerError, "OK", "not healthy: ")))
	mux.Handle("GET /metrics", a.Guard(adminauth.Metrics, promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{})))
	mux.Handle("GET /config", a.Guard(adminauth.Private, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
		_, _ = w.Write(o.Config())
	})))
	if o.JSON != nil {
		mux.Handle("POST /json", a.Guard(adminauth.Decision, o.JSON))
	}
	if o.API != nil {
		mux.Handle("/api/", a.Guard(adminauth.Private, o.API))
	}
	if o.Dashboard != nil {
		d := a.Guard(adminauth.Private, o.Dashboard)
		mux.Handle("GET /{$}", d)
		mux.Handle("GET /assets/", d)
	}
	return mux
}

// readyHandler answers a readiness probe from o.Ready: 200 with ok, or
// failCode with notOK and the reason.
func readyHandler(o AdminOptions, failCode int, ok, notOK string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), o.ReadyTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := o.Ready(ctx); err != nil {
			w.WriteHeader(failCode)
			_, _ = w.Write([]byte(notOK + err.Error() + "\n"))
			return
		}
		_, _ = w.Write([]byte(ok))
	})
}
