package e2e

import (
	"context"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"

	"github.com/extauthz/extauthz/internal/otlptest"
)

// TestTracing runs the binary with tracing on, exporting to an in-process
// OTLP collector, sends a ShouldRateLimit with a W3C traceparent in its
// gRPC metadata, a Check whose HTTP request carries one (linked, not
// continued), and a POST /json with one in its headers, and reads the
// spans flushed at shutdown: names, parents, links, attributes, and no
// secret.
// Once configured in the file (OTLP/gRPC), once by the OTEL_EXPORTER_OTLP_*
// variables alone (OTLP/HTTP).
func TestTracing(t *testing.T) {
	example, err := os.ReadFile(authzExample(t))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		tracing func(col *otlptest.Collector) (yaml string, env []string)
	}{
		{"config grpc", func(col *otlptest.Collector) (string, []string) {
			return "tracing:\n  enabled: true\n  protocol: grpc\n  endpoint: " + col.GRPCAddr + "\n  insecure: true\n  service_name: rl-e2e\n", nil
		}},
		{"env http", func(col *otlptest.Collector) (string, []string) {
			return "tracing:\n  enabled: true\n  service_name: rl-e2e\n", []string{
				"OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + col.HTTPURL,
				"OTEL_EXPORTER_OTLP_HEADERS=x-from-env=1",
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			col := otlptest.Start(t)
			section, env := tc.tracing(col)
			cfg := WriteFile(t, t.TempDir(), "extauthz.yaml", string(example)+"\n"+section)
			p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}, Env: env})
			checkTracedCalls(t, p, col)
			if len(env) > 0 && col.Header("x-from-env") != "1" {
				t.Errorf("OTEL_EXPORTER_OTLP_HEADERS did not reach the collector")
			}
		})
	}
}

const (
	tracedParent   = "4bf92f3577b34da6a3ce929d0e0e4736"
	tracedParent2  = "0af7651916cd43dd8448eb211c80319c"
	tracedParent3  = "5b8aa5a2d2c872e8321cf37308d69df2"
	tracedParentID = "00f067aa0ba902b7"
	tracedSecret   = "sk-e2e-0123456789abcdef" // an API key: never in a span
)

func checkTracedCalls(t *testing.T, p *Process, col *otlptest.Collector) {
	t.Helper()
	conn := p.Dial(t)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "traceparent", "00-"+tracedParent+"-"+tracedParentID+"-01")
	resp, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{
		Domain: "edge_authz", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "198.51.100.9"), desc("api_key", tracedSecret)},
	})
	if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("ShouldRateLimit: %v, %v", resp.GetOverallCode(), err)
	}
	req := authzCheckReq("198.51.100.10", "/orders", "x-api-key", tracedSecret, "traceparent", "00-"+tracedParent2+"-"+tracedParentID+"-01")
	if _, err := authzClient(t, p).Check(context.Background(), req); err != nil {
		t.Fatalf("Check: %v", err)
	}
	body := `{"domain": "edge_authz", "descriptors": [{"entries": [{"key": "api_key", "value": "` + tracedSecret + `"}]}]}`
	hreq, err := http.NewRequest(http.MethodPost, "http://"+p.HTTPAddr+"/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	hreq.Header.Set("Traceparent", "00-"+tracedParent3+"-"+tracedParentID+"-01")
	hresp, err := (&http.Client{Timeout: 5 * time.Second}).Do(hreq)
	if err != nil {
		t.Fatalf("POST /json: %v", err)
	}
	hresp.Body.Close()
	if hresp.StatusCode != http.StatusOK {
		t.Fatalf("POST /json: %s", hresp.Status)
	}
	if n := len(col.Spans()); n != 0 {
		t.Logf("%d spans arrived before shutdown (a batch was due); the flush at shutdown is then not what delivered them", n)
	}
	p.Signal(t, syscall.SIGTERM)
	if code := p.Wait(t, 20*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	// Four calls: authzClient's probe (an empty Check, a new trace) and
	// the three above.
	spans := col.WaitSpans(4, 5*time.Second)
	if len(spans) != 4 {
		t.Fatalf("got %d spans, want 4 (flushed at shutdown): %v", len(spans), spans)
	}
	// A span continues its caller's trace, or, for the client's trace
	// context in a Check's HTTP request, starts a new one linked to it.
	byTrace, byLink := map[string]otlptest.Span{}, map[string]otlptest.Span{}
	for _, s := range spans {
		byTrace[s.TraceID()] = s
		for _, l := range s.GetLinks() {
			byLink[hex.EncodeToString(l.GetTraceId())+"/"+hex.EncodeToString(l.GetSpanId())] = s
		}
	}
	want := []struct {
		name, trace, descriptors string
		linked                   bool
	}{
		{"envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", tracedParent, "2", false},
		{"envoy.service.auth.v3.Authorization/Check", tracedParent2, "2", true},
		{"POST /json", tracedParent3, "1", false},
	}
	for _, w := range want {
		s, ok := byTrace[w.trace]
		wantParent := tracedParentID
		if w.linked {
			s, ok = byLink[w.trace+"/"+tracedParentID]
			wantParent = ""
		}
		if !ok {
			t.Errorf("no span of %s in or linked to trace %s: %v", w.name, w.trace, spans)
			continue
		}
		if s.GetName() != w.name || s.ParentID() != wantParent || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("trace %s: span %q parent %q kind %v, want %q %q server", w.trace, s.GetName(), s.ParentID(), s.GetKind(), w.name, wantParent)
		}
		wantAttrs := map[string]string{"ratelimit.domain": "edge_authz", "ratelimit.descriptors": w.descriptors, "ratelimit.code": "ok", "rpc.grpc.status_code": "0"}
		if w.trace == tracedParent3 {
			delete(wantAttrs, "rpc.grpc.status_code")
			wantAttrs["http.response.status_code"] = "200"
		}
		for k, v := range wantAttrs {
			if got, _ := s.Attr(k); got != v {
				t.Errorf("%s: %s = %q, want %q", w.name, k, got, v)
			}
		}
		if s.Resource["service.name"] != "rl-e2e" {
			t.Errorf("%s: service.name %q, want rl-e2e", w.name, s.Resource["service.name"])
		}
		if all := s.String(); strings.Contains(all, tracedSecret) || strings.Contains(all, "198.51.100") {
			t.Errorf("%s holds a request value: %s", w.name, all)
		}
	}
}
