package server

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsSettings(t *testing.T) {
	tests := []struct {
		s    MetricsSettings
		want string
	}{
		{MetricsSettings{}, ""},
		{MetricsSettings{Addr: ":9090", Path: "/metrics"}, ""},
		{MetricsSettings{Addr: "127.0.0.1:9090", Path: "/stats/prometheus"}, ""},
		{MetricsSettings{Addr: "9090"}, `addr: "9090" is not a listen address`},
		{MetricsSettings{Addr: ":99999"}, `addr: ":99999"`},
		{MetricsSettings{Addr: ":9090", Path: "metrics"}, `path: "metrics": expected an absolute URL path`},
		{MetricsSettings{Addr: ":9090", Path: "/a b"}, `path: "/a b"`},
	}
	for _, tc := range tests {
		err := tc.s.WithDefaults().Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%+v: got %v, want %q", tc.s, err, tc.want)
		}
	}
	if got := (MetricsSettings{Addr: ":9090"}).WithDefaults().Path; got != DefaultMetricsPath {
		t.Errorf("default path %q", got)
	}
	if got := (MetricsSettings{}).WithDefaults(); got != (MetricsSettings{}) {
		t.Errorf("unset section got defaults %+v", got)
	}
}

func TestMetricsHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "probe_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	h := NewMetricsHandler(reg, "/stats/prometheus")
	for _, tc := range []struct {
		method, path string
		code         int
		body         string
	}{
		{"GET", "/stats/prometheus", 200, "probe_total 1"},
		{"GET", "/metrics", 404, ""},
		{"POST", "/stats/prometheus", 405, ""},
		{"GET", "/stats/prometheus/../../config", 307, "/config"}, // cleaned, then 404 there
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}
