package server

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/extauthz/extauthz/pkg/field"
)

// MetricsSettings configure a listener that serves only the Prometheus
// metrics (the counterpart of envoyproxy/ratelimit's USE_PROMETHEUS,
// PROMETHEUS_ADDR and PROMETHEUS_PATH), besides /metrics on the admin
// listener:
//
//	metrics:
//	  addr: ":9090"      # "": no metrics listener (default)
//	  path: /metrics     # default /metrics
//
// The listener is plain HTTP and open: admin.auth does not apply to it.
type MetricsSettings struct {
	Addr string `yaml:"addr"`
	Path string `yaml:"path"`
}

// DefaultMetricsPath is MetricsSettings.Path's default.
const DefaultMetricsPath = "/metrics"

// WithDefaults returns s with its zero values replaced by the defaults
// (Path only with an Addr, so that an unset section stays empty).
func (s MetricsSettings) WithDefaults() MetricsSettings {
	if s.Addr != "" && s.Path == "" {
		s.Path = DefaultMetricsPath
	}
	return s
}

// Validate checks s; errors are *field.Error values at "addr" and "path".
func (s MetricsSettings) Validate() error {
	var errs []error
	if s.Addr != "" {
		_, port, err := net.SplitHostPort(s.Addr)
		if err == nil {
			_, err = strconv.ParseUint(port, 10, 16)
		}
		if err != nil {
			errs = append(errs, field.Errorf("addr", "%q is not a listen address: expected HOST:PORT or :PORT, e.g. :9090", s.Addr))
		}
	}
	if s.Path != "" && (!strings.HasPrefix(s.Path, "/") || strings.ContainsAny(s.Path, " ?#{}")) {
		errs = append(errs, field.Errorf("path", "%q: expected an absolute URL path such as /metrics", s.Path))
	}
	return errors.Join(errs...)
}

// NewMetricsHandler serves g's metrics at path (GET) and 404 elsewhere.
func NewMetricsHandler(g prometheus.Gatherer, path string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET "+path, promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	return mux
}
