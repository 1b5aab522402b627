package tracing

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/secret"
)

func ratio(v float64) *float64 { return &v }

func TestValidate(t *testing.T) {
	cases := []struct {
		name     string
		s        Settings
		path     string // "" for no error
		contains string
	}{
		{name: "zero", s: Settings{}},
		{name: "full", s: Settings{Enabled: true, Protocol: ProtocolGRPC, Endpoint: "otel-collector:4317", Insecure: true,
			Headers: map[string]secret.String{"authorization": "Bearer x"}, SamplingRatio: ratio(0.25), ServiceName: "rl"}},
		{name: "http url", s: Settings{Protocol: ProtocolHTTP, Endpoint: "https://collector.example:4318/custom/v1/traces"}},
		{name: "grpc url", s: Settings{Protocol: ProtocolGRPC, Endpoint: "http://[::1]:4317"}},
		{name: "ratio 0", s: Settings{SamplingRatio: ratio(0)}},
		{name: "ratio 1", s: Settings{SamplingRatio: ratio(1)}},
		{name: "ratio above 1", s: Settings{SamplingRatio: ratio(1.01)}, path: "sampling_ratio", contains: "out of range"},
		{name: "ratio negative", s: Settings{SamplingRatio: ratio(-0.1)}, path: "sampling_ratio", contains: "out of range"},
		{name: "ratio NaN", s: Settings{SamplingRatio: ratio(math.NaN())}, path: "sampling_ratio", contains: "out of range"},
		{name: "unknown protocol", s: Settings{Protocol: 7}, path: "protocol", contains: "grpc or http"},
		{name: "no port", s: Settings{Endpoint: "collector"}, path: "endpoint", contains: "HOST:PORT"},
		{name: "port 0", s: Settings{Endpoint: "collector:0"}, path: "endpoint", contains: "1 to 65535"},
		{name: "port text", s: Settings{Endpoint: "collector:otlp"}, path: "endpoint", contains: "1 to 65535"},
		{name: "empty host", s: Settings{Endpoint: ":4317"}, path: "endpoint", contains: "HOST:PORT"},
		{name: "space", s: Settings{Endpoint: "coll ector:4317"}, path: "endpoint", contains: "HOST:PORT"},
		{name: "scheme", s: Settings{Endpoint: "grpc://collector:4317"}, path: "endpoint", contains: "http:// or https://"},
		{name: "no url host", s: Settings{Endpoint: "http://:4318"}, path: "endpoint", contains: "no host"},
		{name: "credentials", s: Settings{Endpoint: "https://u:p@collector:4318"}, path: "endpoint", contains: "headers"},
		{name: "query", s: Settings{Endpoint: "https://collector:4318/v1/traces?x=1"}, path: "endpoint", contains: "query"},
		{name: "insecure https", s: Settings{Endpoint: "https://collector:4318", Insecure: true}, path: "endpoint", contains: "insecure"},
		{name: "grpc path", s: Settings{Protocol: ProtocolGRPC, Endpoint: "http://collector:4317/v1/traces"}, path: "endpoint", contains: "path"},
		{name: "url port", s: Settings{Endpoint: "http://collector:99999"}, path: "endpoint", contains: "1 to 65535"},
		{name: "bad url", s: Settings{Endpoint: "http://collector:4318/%zz"}, path: "endpoint", contains: "not a URL"},
		{name: "header name", s: Settings{Headers: map[string]secret.String{"bad:name": "x"}}, path: "headers", contains: "header name"},
		{name: "header CRLF", s: Settings{Headers: map[string]secret.String{"x-a": "v\r\nx-injected: 1"}}, path: "headers.x-a", contains: "control character"},
		{name: "service name control", s: Settings{ServiceName: "rl\x00"}, path: "service_name", contains: "control character"},
		{name: "service name bad utf8", s: Settings{ServiceNamespace: "\xff"}, path: "service_namespace", contains: "invalid UTF-8"},
		{name: "instance too long", s: Settings{ServiceInstanceID: strings.Repeat("a", 256)}, path: "service_instance_id", contains: "too long"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.path == "" {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			var fe *field.Error
			if !errors.As(err, &fe) || fe.Path != tc.path || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("got %v, want a *field.Error at %q containing %q", err, tc.path, tc.contains)
			}
			if strings.Contains(err.Error(), "v\r\n") {
				t.Errorf("the error quotes a header's secret value: %v", err)
			}
		})
	}
}

func TestProtocol(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	cases := []struct {
		name    string
		set     Protocol
		env     map[string]string
		want    Protocol
		wantErr string
	}{
		{name: "default http", want: ProtocolHTTP},
		{name: "setting wins", set: ProtocolGRPC, env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, want: ProtocolGRPC},
		{name: "env", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: ProtocolGRPC},
		{name: "traces env first", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, want: ProtocolHTTP},
		{name: "json unsupported", env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: "OTEL_EXPORTER_OTLP_PROTOCOL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Settings{Protocol: tc.set}
			got, err := s.protocol(env(tc.env))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, %v; want an error naming %s", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	for _, name := range []string{"grpc", "http"} {
		var p Protocol
		if err := p.UnmarshalText([]byte(name)); err != nil {
			t.Fatal(err)
		}
		if text, _ := p.MarshalText(); string(text) != name {
			t.Errorf("%s round-trips as %q", name, text)
		}
	}
	var p Protocol
	if err := p.UnmarshalText([]byte("GRPC ")); err == nil {
		t.Error("accepted an unknown protocol")
	}
}

// TestResource: defaults, then the OTel variables, then the settings.
func TestResource(t *testing.T) {
	attrs := func(t *testing.T, s Settings) map[string]string {
		t.Helper()
		res, err := newResource(context.Background(), &s, "v1")
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, kv := range res.Attributes() {
			m[string(kv.Key)] = kv.Value.AsString()
		}
		return m
	}
	t.Run("defaults", func(t *testing.T) {
		t.Setenv("OTEL_SERVICE_NAME", "")
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "")
		a := attrs(t, Settings{})
		if a["service.name"] != "extauthz" || a["service.version"] != "v1" || len(a["service.instance.id"]) != 36 {
			t.Errorf("got %v, want service.name extauthz, version v1 and a UUID instance id", a)
		}
		if b := attrs(t, Settings{}); b["service.instance.id"] == a["service.instance.id"] {
			t.Error("two processes share a random instance id")
		}
	})
	t.Run("env over defaults", func(t *testing.T) {
		t.Setenv("OTEL_SERVICE_NAME", "from-env")
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.instance.id=env-id")
		a := attrs(t, Settings{})
		if a["service.name"] != "from-env" || a["service.instance.id"] != "env-id" || a["deployment.environment"] != "prod" {
			t.Errorf("got %v, want the variables' values", a)
		}
		a = attrs(t, Settings{ServiceName: "rl", ServiceInstanceID: "pod-1", ServiceNamespace: "edge"})
		if a["service.name"] != "rl" || a["service.instance.id"] != "pod-1" || a["service.namespace"] != "edge" || a["deployment.environment"] != "prod" {
			t.Errorf("got %v, want the settings over the variables", a)
		}
	})
}
