package opsmetrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

func TestConfigMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	now := time.Unix(1700000000, 500_000_000)
	m := New(reg, func() time.Time { return now })

	m.ConfigLoaded("aaa")
	now = now.Add(time.Minute)
	m.ConfigUnchanged()
	m.ConfigReloadFailed()
	m.ConfigReloadFailed()
	m.ConfigReloaded("bbb", []string{"grpc_addr"})

	want := `
# HELP extauthz_config_info Always 1; hash is the SHA-256 of the effective configuration in service.
# TYPE extauthz_config_info gauge
extauthz_config_info{hash="bbb"} 1
# HELP extauthz_config_last_reload_success_timestamp_seconds Unix time the configuration in service was loaded.
# TYPE extauthz_config_last_reload_success_timestamp_seconds gauge
extauthz_config_last_reload_success_timestamp_seconds 1.7000000605e+09
# HELP extauthz_config_reloads_total Configuration reloads, by result (success, unchanged, failure).
# TYPE extauthz_config_reloads_total counter
extauthz_config_reloads_total{result="failure"} 2
extauthz_config_reloads_total{result="success"} 1
extauthz_config_reloads_total{result="unchanged"} 1
# HELP extauthz_config_restart_required 1 while reloaded settings that apply only on restart differ from the running ones.
# TYPE extauthz_config_restart_required gauge
extauthz_config_restart_required 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	// Reverting the restart-only change clears the gauge.
	m.ConfigReloaded("aaa", nil)
	if got := testutil.ToFloat64(m.restart); got != 0 {
		t.Errorf("restart_required after reverting: got %v, want 0", got)
	}
	if n := testutil.CollectAndCount(m.info); n != 1 {
		t.Errorf("config_info series: got %d, want 1 (the old hash removed)", n)
	}
	lint(t, reg)
}

func TestTLSMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	m.CertLoaded(time.Unix(2000000000, 0), false) // before EnableTLS: ignored
	m.CertReloadFailed()
	if n, err := testutil.GatherAndCount(reg, "extauthz_tls_certificate_expiry_timestamp_seconds"); err != nil || n != 0 {
		t.Fatalf("TLS series without TLS: got %d (%v), want 0", n, err)
	}
	if err := m.EnableTLS(); err != nil {
		t.Fatal(err)
	}
	if err := m.EnableTLS(); err != nil {
		t.Fatalf("second EnableTLS: %v", err)
	}
	m.CertLoaded(time.Unix(2000000000, 0), false)
	m.CertLoaded(time.Unix(2100000000, 0), true)
	m.CertReloadFailed()
	want := `
# HELP extauthz_tls_certificate_expiry_timestamp_seconds Unix time the served TLS certificate expires.
# TYPE extauthz_tls_certificate_expiry_timestamp_seconds gauge
extauthz_tls_certificate_expiry_timestamp_seconds 2.1e+09
# HELP extauthz_tls_certificate_reloads_total TLS certificate reloads from disk, by result (success, failure).
# TYPE extauthz_tls_certificate_reloads_total counter
extauthz_tls_certificate_reloads_total{result="failure"} 1
extauthz_tls_certificate_reloads_total{result="success"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "extauthz_tls_certificate_expiry_timestamp_seconds", "extauthz_tls_certificate_reloads_total"); err != nil {
		t.Error(err)
	}
	lint(t, reg)
}

// fakeMemory is a memory store with settable numbers.
type fakeMemory struct {
	n         int
	evictions uint64
}

func (f *fakeMemory) Len() int          { return f.n }
func (f *fakeMemory) Evictions() uint64 { return f.evictions }

func TestMemoryBackendMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := New(reg, nil)
	mem := &fakeMemory{n: 10, evictions: 3}
	if err := m.AddMemoryBackend("memory", mem); err != nil {
		t.Fatal(err)
	}
	mem.n, mem.evictions = 1000, 42 // read at scrape time
	want := `
# HELP extauthz_memory_backend_evictions_total Unexpired counters a full memory backend evicted to make room for new keys.
# TYPE extauthz_memory_backend_evictions_total counter
extauthz_memory_backend_evictions_total{backend="memory"} 42
# HELP extauthz_memory_backend_keys Counters held by a memory backend (expired ones included until swept).
# TYPE extauthz_memory_backend_keys gauge
extauthz_memory_backend_keys{backend="memory"} 1000
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "extauthz_memory_backend_keys", "extauthz_memory_backend_evictions_total"); err != nil {
		t.Error(err)
	}
	if err := m.AddMemoryBackend("memory", mem); err == nil {
		t.Error("registering the same backend twice: got nil, want an error")
	}
	if err := m.AddMemoryBackend("fallback", &fakeMemory{}); err != nil {
		t.Errorf("a second memory backend: %v", err)
	}
	lint(t, reg)
}

func lint(t *testing.T, reg *prometheus.Registry) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
