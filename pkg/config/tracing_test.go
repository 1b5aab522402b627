package config

import (
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/tracing"
)

func TestTracingSection(t *testing.T) {
	cfg, err := loadString(t, `
tracing:
  enabled: true
  protocol: grpc
  endpoint: http://127.0.0.1:4317
  headers: {authorization: "Bearer s3cret"}
  sampling_ratio: 0
  service_namespace: edge
`+insightRules)
	if err != nil {
		t.Fatal(err)
	}
	tr := cfg.Tracing
	if !tr.Enabled || tr.Protocol != tracing.ProtocolGRPC || tr.Endpoint != "http://127.0.0.1:4317" ||
		tr.SamplingRatio == nil || *tr.SamplingRatio != 0 || tr.ServiceNamespace != "edge" ||
		string(tr.Headers["authorization"]) != "Bearer s3cret" {
		t.Errorf("tracing = %+v", tr)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cret") || !strings.Contains(string(out), "authorization: "+RedactedText) {
		t.Errorf("/config shows the header's secret or drops it:\n%s", out)
	}
	if !strings.Contains(string(out), "sampling_ratio: 0.0") || !strings.Contains(string(out), "protocol: grpc") {
		t.Errorf("/config lost sampling_ratio 0 or the protocol:\n%s", out)
	}

	// Unset: off, and out of /config.
	cfg, err = loadString(t, insightRules)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Tracing.Enabled {
		t.Error("tracing is on by default")
	}
	if out, _ := cfg.Redacted(); strings.Contains(string(out), "tracing") {
		t.Errorf("an unset tracing section shows in /config:\n%s", out)
	}
}

func TestTracingErrors(t *testing.T) {
	_, err := loadString(t, `
tracing:
  enabled: true
  protocol: zipkin
  endpoint: "https://user:pw@collector:4318"
  sampling_ratio: 1.5
  headers: {"bad header": x}
  sample_ratio: 1
`+insightRules)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`test.yaml:4:13: tracing.protocol: unknown protocol "zipkin": expected grpc or http`,
		`test.yaml:5:13: tracing.endpoint: "https://user:pw@collector:4318" holds credentials`,
		`test.yaml:6:19: tracing.sampling_ratio: 1.5 is out of range`,
		`tracing.headers: "bad header" is not a valid header name`,
		`sample_ratio`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
