package xdsrules_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/pkg/xdsrules"
)

// TestNewMetricsTwice: a second registration on one registry is an error
// naming the metric, not a panic.
func TestNewMetricsTwice(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := xdsrules.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	_, err := xdsrules.NewMetrics(reg)
	if err == nil || !strings.Contains(err.Error(), "extauthz_xds_") {
		t.Fatalf("second NewMetrics: %v, want an error naming the metric", err)
	}
}
