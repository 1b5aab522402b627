package tracing

import (
	"context"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Full method names of the traced calls.
var (
	methodShouldRateLimit = "/" + rlsv3.RateLimitService_ServiceDesc.ServiceName + "/ShouldRateLimit"
	methodCheck           = "/" + authv3.Authorization_ServiceDesc.ServiceName + "/Check"
)

// tracedMethods are the calls that get a span, with its name and start
// attributes (OpenTelemetry's RPC conventions); every other call (health
// checks, reflection) passes untouched.
var tracedMethods = map[string]methodSpan{
	methodShouldRateLimit: newMethodSpan(rlsv3.RateLimitService_ServiceDesc.ServiceName, "ShouldRateLimit"),
	methodCheck:           newMethodSpan(authv3.Authorization_ServiceDesc.ServiceName, "Check"),
}

type methodSpan struct {
	name  string
	attrs []attribute.KeyValue
}

func newMethodSpan(service, method string) methodSpan {
	return methodSpan{
		name: service + "/" + method,
		attrs: []attribute.KeyValue{
			attribute.String("rpc.system", "grpc"),
			attribute.String("rpc.service", service),
			attribute.String("rpc.method", method),
		},
	}
}

// attrGRPCStatus is the call's gRPC status code (a number, as the RPC
// conventions have it).
const attrGRPCStatus = attribute.Key("rpc.grpc.status_code")

// Interceptor returns the unary server interceptor that traces
// ShouldRateLimit and Check, or nil for a nil Provider (tracing off).
// Install it outermost, so that a span covers the whole call, a recovered
// panic included. The handler finds the span in its context
// (trace.SpanFromContext) to add what only it knows.
func (p *Provider) Interceptor() grpc.UnaryServerInterceptor {
	if p == nil {
		return nil
	}
	return p.intercept
}

func (p *Provider) intercept(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	m, ok := tracedMethods[info.FullMethod]
	if !ok {
		return handler(ctx, req)
	}
	ctx, link := p.extract(ctx, req)
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(m.attrs...)}
	if link.SpanContext.IsValid() {
		opts = append(opts, trace.WithLinks(link))
	}
	ctx, span := p.tracer.Start(ctx, m.name, opts...)
	defer span.End()
	resp, err := handler(ctx, req)
	code := status.Code(err)
	span.SetAttributes(attrGRPCStatus.Int64(int64(code)))
	if serverFault(code) {
		// The code, never the message: messages of invalid requests may
		// quote what the client sent.
		span.SetStatus(otelcodes.Error, code.String())
	}
	return resp, err
}

// serverFault reports whether code means the server failed the call (the
// RPC conventions' list for server spans), rather than refused the
// caller's request.
func serverFault(code codes.Code) bool {
	switch code {
	case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// extract returns ctx with the caller's W3C trace context (traceparent,
// tracestate) as the remote parent, from the gRPC metadata, which Envoy
// fills when it traces its call to us. Without one, for Check, the trace
// context of the HTTP request inside the CheckRequest comes back as a
// link: it is the client's, so it may correlate the span but neither
// makes it a child nor decides its sampling (a client marking every
// request sampled would otherwise have every call recorded, whatever
// sampling_ratio says). An invalid context is ignored.
func (p *Provider) extract(ctx context.Context, req any) (context.Context, trace.Link) {
	out := p.prop.Extract(ctx, metadataCarrier{ctx})
	if trace.SpanContextFromContext(out).IsValid() {
		return out, trace.Link{}
	}
	cr, ok := req.(*authv3.CheckRequest)
	if !ok {
		return ctx, trace.Link{}
	}
	var client context.Context
	h := cr.GetAttributes().GetRequest().GetHttp()
	if hs := h.GetHeaders(); len(hs) > 0 {
		client = p.prop.Extract(context.Background(), propagation.MapCarrier(hs))
	} else if hm := h.GetHeaderMap(); hm != nil {
		client = p.prop.Extract(context.Background(), headerMapCarrier{hm.GetHeaders()})
	} else {
		return ctx, trace.Link{}
	}
	return ctx, trace.Link{SpanContext: trace.SpanContextFromContext(client)}
}

// metadataCarrier reads the incoming gRPC metadata of ctx, one key at a
// time (no copy of the whole metadata).
type metadataCarrier struct{ ctx context.Context }

// Get returns the first value of key.
func (c metadataCarrier) Get(key string) string {
	if vs := metadata.ValueFromIncomingContext(c.ctx, key); len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// Set does nothing: the carrier is read-only.
func (metadataCarrier) Set(string, string) {}

// Keys returns nothing: the W3C propagator never lists keys.
func (metadataCarrier) Keys() []string { return nil }

// headerMapCarrier reads the header_map Envoy sends instead of headers
// when encode_raw_headers is set (values as raw bytes).
type headerMapCarrier struct{ hs []*corev3.HeaderValue }

// Get returns the first value of key.
func (c headerMapCarrier) Get(key string) string {
	for _, h := range c.hs {
		if !strings.EqualFold(h.GetKey(), key) {
			continue
		}
		if v := h.GetValue(); v != "" {
			return v
		}
		return string(h.GetRawValue())
	}
	return ""
}

// Set does nothing: the carrier is read-only.
func (headerMapCarrier) Set(string, string) {}

// Keys returns nothing: the W3C propagator never lists keys.
func (headerMapCarrier) Keys() []string { return nil }
