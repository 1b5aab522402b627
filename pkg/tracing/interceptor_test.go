package tracing

import (
	"context"
	"encoding/hex"
	"net"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/internal/otlptest"
	"github.com/extauthz/extauthz/pkg/secret"
)

// fakeAPIs answers both APIs: a domain (or Check path) "unavailable"
// fails with UNAVAILABLE, "invalid" with INVALID_ARGUMENT, "panic"
// panics; every handler marks the span it finds in its context.
type fakeAPIs struct {
	rlsv3.UnimplementedRateLimitServiceServer
	authv3.UnimplementedAuthorizationServer
}

func answer(ctx context.Context, what string) error {
	trace.SpanFromContext(ctx).SetAttributes(attribute.Bool("test.handler_saw_span", true))
	switch what {
	case "unavailable":
		return status.Error(codes.Unavailable, "store down")
	case "invalid":
		return status.Error(codes.InvalidArgument, "descriptor 0 holds sk_live_secret")
	case "panic":
		panic("handler bug")
	}
	return nil
}

func (fakeAPIs) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if err := answer(ctx, req.GetDomain()); err != nil {
		return nil, err
	}
	return &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}, nil
}

func (fakeAPIs) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	if err := answer(ctx, strings.TrimPrefix(req.GetAttributes().GetRequest().GetHttp().GetPath(), "/")); err != nil {
		return nil, err
	}
	return &authv3.CheckResponse{}, nil
}

// recoverPanics stands for the server's own panic recovery, installed
// inside the tracing interceptor.
func recoverPanics(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if recover() != nil {
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
	}()
	return h(ctx, req)
}

// serveTraced serves fakeAPIs and health on a loopback port behind p's
// interceptor and returns a client connection.
func serveTraced(t *testing.T, p *Provider) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(p.Interceptor(), recoverPanics))
	rlsv3.RegisterRateLimitServiceServer(g, fakeAPIs{})
	authv3.RegisterAuthorizationServer(g, fakeAPIs{})
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func startProvider(t *testing.T, s Settings) *Provider {
	t.Helper()
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := Start(context.Background(), s, Options{Version: "v9.9.9", Getenv: func(string) string { return "" }})
	if err != nil || p == nil {
		t.Fatalf("Start: %v, %v", p, err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p
}

func flush(t *testing.T, p *Provider) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

const (
	parentTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	parentSpan  = "00f067aa0ba902b7"
	otherTrace  = "0af7651916cd43dd8448eb211c80319c"
)

func traceparent(traceID string) string { return "00-" + traceID + "-" + parentSpan + "-01" }

func rlsReq(domain string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "api_key", Value: "sk_live_secret"}}},
	}}
}

func checkReq(path string, headers map[string]string, headerMap []*corev3.HeaderValue) *authv3.CheckRequest {
	h := &authv3.AttributeContext_HttpRequest{Method: "GET", Path: path, Headers: headers}
	if headerMap != nil {
		h.HeaderMap = &corev3.HeaderMap{Headers: headerMap}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
}

// TestInterceptorExports sends calls to a traced server and reads the
// spans an OTLP/gRPC collector received: names, parents, links,
// attributes, status, and nothing for untraced methods.
func TestInterceptorExports(t *testing.T) {
	col := otlptest.Start(t)
	p := startProvider(t, Settings{Enabled: true, Protocol: ProtocolGRPC, Endpoint: col.GRPCAddr, Insecure: true,
		ServiceNamespace: "edge", ServiceInstanceID: "pod-1", Headers: map[string]secret.String{"authorization": "Bearer t0k"}})
	conn := serveTraced(t, p)
	rls, authz := rlsv3.NewRateLimitServiceClient(conn), authv3.NewAuthorizationClient(conn)
	withParent := func(tp string) context.Context {
		return metadata.AppendToOutgoingContext(context.Background(), "traceparent", tp, "tracestate", "vendor=x")
	}
	bg := context.Background()
	type call struct {
		name string
		do   func() error
		want codes.Code
	}
	calls := []call{
		{"rls parent", func() error {
			_, err := rls.ShouldRateLimit(withParent(traceparent(parentTrace)), rlsReq("ok"))
			return err
		}, codes.OK},
		{"rls unavailable", func() error { _, err := rls.ShouldRateLimit(bg, rlsReq("unavailable")); return err }, codes.Unavailable},
		{"rls invalid", func() error { _, err := rls.ShouldRateLimit(bg, rlsReq("invalid")); return err }, codes.InvalidArgument},
		{"rls panic", func() error { _, err := rls.ShouldRateLimit(bg, rlsReq("panic")); return err }, codes.Internal},
		{"rls bad parent", func() error { _, err := rls.ShouldRateLimit(withParent("00-zz-yy-01"), rlsReq("ok")); return err }, codes.OK},
		{"check headers", func() error {
			_, err := authz.Check(bg, checkReq("/ok", map[string]string{"traceparent": traceparent(otherTrace)}, nil))
			return err
		}, codes.OK},
		{"check header_map", func() error {
			_, err := authz.Check(bg, checkReq("/ok", nil, []*corev3.HeaderValue{{Key: "Traceparent", RawValue: []byte(traceparent(otherTrace))}}))
			return err
		}, codes.OK},
		{"check metadata wins", func() error {
			_, err := authz.Check(withParent(traceparent(parentTrace)), checkReq("/ok", map[string]string{"traceparent": traceparent(otherTrace)}, nil))
			return err
		}, codes.OK},
		{"health", func() error {
			_, err := healthpb.NewHealthClient(conn).Check(bg, &healthpb.HealthCheckRequest{})
			return err
		}, codes.OK},
	}
	for _, c := range calls {
		if err := c.do(); status.Code(err) != c.want {
			t.Fatalf("%s: got %v, want %v", c.name, err, c.want)
		}
	}
	flush(t, p)
	if got := col.Header("authorization"); got != "Bearer t0k" {
		t.Errorf("the collector got authorization %q, want the configured header", got)
	}
	spans := col.Spans()
	if len(spans) != 8 {
		t.Fatalf("got %d spans, want 8 (one per API call, none for health): %v", len(spans), spans)
	}
	rlsName := "envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
	checkName := "envoy.service.auth.v3.Authorization/Check"
	// link: the span is a new root linked to the client's trace context
	// (a Check's HTTP headers), never its child.
	want := []struct {
		name, trace, status string
		grpcCode            string
		errStatus           bool
		link                string
	}{
		{rlsName, parentTrace, "ok", "0", false, ""},
		{rlsName, "", "unavailable", "14", true, ""},
		{rlsName, "", "invalid", "3", false, ""},
		{rlsName, "", "panic", "13", true, ""},
		{rlsName, "", "bad parent", "0", false, ""},
		{checkName, "", "headers", "0", false, otherTrace},
		{checkName, "", "header_map", "0", false, otherTrace},
		{checkName, parentTrace, "metadata wins", "0", false, ""},
	}
	for i, w := range want {
		s := spans[i]
		if s.GetName() != w.name || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("span %d (%s): name %q kind %v, want %q server", i, w.status, s.GetName(), s.GetKind(), w.name)
		}
		var links []string
		for _, l := range s.GetLinks() {
			links = append(links, hex.EncodeToString(l.GetTraceId())+"/"+hex.EncodeToString(l.GetSpanId()))
		}
		if w.link == "" && len(links) > 0 || w.link != "" && (len(links) != 1 || links[0] != w.link+"/"+parentSpan) {
			t.Errorf("span %d (%s): links %v, want %q", i, w.status, links, w.link)
		}
		if w.trace != "" && (s.TraceID() != w.trace || s.ParentID() != parentSpan) {
			t.Errorf("span %d (%s): trace %s parent %s, want %s %s", i, w.status, s.TraceID(), s.ParentID(), w.trace, parentSpan)
		}
		if w.trace == "" && (s.ParentID() != "" || s.TraceID() == parentTrace || s.TraceID() == otherTrace) {
			t.Errorf("span %d (%s): trace %s parent %q, want a new root", i, w.status, s.TraceID(), s.ParentID())
		}
		if got, _ := s.Attr("rpc.grpc.status_code"); got != w.grpcCode {
			t.Errorf("span %d (%s): rpc.grpc.status_code %q, want %s", i, w.status, got, w.grpcCode)
		}
		if isErr := s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR; isErr != w.errStatus {
			t.Errorf("span %d (%s): status %v, want error %v", i, w.status, s.GetStatus(), w.errStatus)
		}
		if got, _ := s.Attr("rpc.system"); got != "grpc" {
			t.Errorf("span %d: rpc.system %q", i, got)
		}
		if w.status != "panic" {
			if got, _ := s.Attr("test.handler_saw_span"); got != "true" {
				t.Errorf("span %d (%s): the handler did not find the span in its context", i, w.status)
			}
		}
		if strings.Contains(s.String(), "sk_live_secret") {
			t.Errorf("span %d (%s) holds a request value: %v", i, w.status, s)
		}
		for k, v := range map[string]string{"service.name": "extauthz", "service.namespace": "edge", "service.instance.id": "pod-1", "service.version": "v9.9.9"} {
			if s.Resource[k] != v {
				t.Errorf("span %d: resource %s = %q, want %q", i, k, s.Resource[k], v)
			}
		}
	}
	if ts := spans[0].GetTraceState(); ts != "vendor=x" {
		t.Errorf("tracestate %q, want vendor=x", ts)
	}
}

// TestSampling: ratio 0 records no new trace, but follows a caller that
// sampled; an unsampled caller is followed too; a Check's HTTP request
// marked sampled by the client is not. Over OTLP/HTTP, to an
// endpoint URL without a path.
func TestSampling(t *testing.T) {
	col := otlptest.Start(t)
	zero := 0.0
	// The base URL: the exporter adds /v1/traces.
	base := strings.TrimSuffix(col.HTTPURL, "/v1/traces")
	p := startProvider(t, Settings{Enabled: true, Protocol: ProtocolHTTP, Endpoint: base, SamplingRatio: &zero,
		Headers: map[string]secret.String{"X-Tenant": "t1"}})
	rls := rlsv3.NewRateLimitServiceClient(serveTraced(t, p))
	for _, tp := range []string{"", traceparent(parentTrace), "00-" + otherTrace + "-" + parentSpan + "-00"} {
		ctx := context.Background()
		if tp != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "traceparent", tp)
		}
		if _, err := rls.ShouldRateLimit(ctx, rlsReq("ok")); err != nil {
			t.Fatal(err)
		}
	}
	// A client cannot force sampling through the HTTP request of a Check.
	authz := authv3.NewAuthorizationClient(serveTraced(t, p))
	if _, err := authz.Check(context.Background(), checkReq("/ok", map[string]string{"traceparent": traceparent(otherTrace)}, nil)); err != nil {
		t.Fatal(err)
	}
	flush(t, p)
	spans := col.Spans()
	if len(spans) != 1 || spans[0].TraceID() != parentTrace {
		t.Fatalf("got %d spans (%v), want only the sampled caller's over OTLP/HTTP", len(spans), spans)
	}
	if got := col.Header("x-tenant"); got != "t1" {
		t.Errorf("the collector got x-tenant %q, want the configured header", got)
	}
}

// TestOff: a disabled provider is nil, installs nothing and shuts down
// cleanly.
func TestOff(t *testing.T) {
	p, err := Start(context.Background(), Settings{Endpoint: "collector:4317"}, Options{})
	if p != nil || err != nil {
		t.Fatalf("Start of disabled settings: %v, %v; want nil, nil", p, err)
	}
	if p.Interceptor() != nil {
		t.Error("a nil provider returned an interceptor")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestHostileTraceContext: whatever a client puts in traceparent or
// tracestate, the call is answered and the span starts a new trace or
// continues a valid one; nothing panics.
func TestHostileTraceContext(t *testing.T) {
	col := otlptest.Start(t)
	p := startProvider(t, Settings{Enabled: true, Protocol: ProtocolGRPC, Endpoint: "http://" + col.GRPCAddr})
	conn := serveTraced(t, p)
	rls, authz := rlsv3.NewRateLimitServiceClient(conn), authv3.NewAuthorizationClient(conn)
	hostile := []string{
		"", "00", "ff-" + parentTrace + "-" + parentSpan + "-01", // version ff is invalid
		"00-00000000000000000000000000000000-" + parentSpan + "-01", // zero trace id
		"00-" + parentTrace + "-0000000000000000-01",                // zero span id
		strings.Repeat("0", 8000), "00-" + strings.Repeat("a", 32) + "-" + strings.Repeat("b", 16) + "-01-extra",
	}
	for _, tp := range hostile {
		md := metadata.Pairs("traceparent", tp, "tracestate", strings.Repeat("k=v,", 500))
		if _, err := rls.ShouldRateLimit(metadata.NewOutgoingContext(context.Background(), md), rlsReq("ok")); err != nil {
			t.Errorf("traceparent %.40q: %v", tp, err)
		}
		hdrs := map[string]string{"traceparent": tp + "\x7f\u00ff", "tracestate": strings.Repeat("=,", 1000)}
		if _, err := authz.Check(context.Background(), checkReq("/ok", hdrs, nil)); err != nil {
			t.Errorf("Check traceparent %.40q: %v", tp, err)
		}
	}
	// A Check without attributes at all.
	if _, err := authz.Check(context.Background(), &authv3.CheckRequest{}); err != nil {
		t.Errorf("empty Check: %v", err)
	}
	flush(t, p)
	spans := col.Spans()
	if len(spans) != 2*len(hostile)+1 {
		t.Fatalf("got %d spans, want %d", len(spans), 2*len(hostile)+1)
	}
	for i, s := range spans {
		if len(s.GetTraceState()) > 512 {
			t.Errorf("span %d kept a %d-byte tracestate", i, len(s.GetTraceState()))
		}
	}
}
