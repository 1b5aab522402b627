// Package tracing exports OpenTelemetry spans of the RateLimitService and
// ext_authz calls over OTLP, continuing the W3C trace context Envoy sends;
// when off, nothing is installed and calls pay nothing.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/extauthz/extauthz/pkg/logging"
)

// instrumentationName names the tracer (the instrumentation scope).
const instrumentationName = "github.com/extauthz/extauthz/pkg/tracing"

// Options are what Start needs besides the settings.
type Options struct {
	// Version is the service.version resource attribute ("" leaves it out).
	Version string
	// Getenv reads the OTEL_* variables that decide the protocol when
	// Settings.Protocol is unset (default os.Getenv). The exporters read
	// the other OTEL_EXPORTER_OTLP_* variables from the process
	// environment themselves.
	Getenv func(string) string
	// Logger receives export errors (default: OpenTelemetry's own
	// handler, which prints them to stderr).
	Logger *slog.Logger
}

// Provider exports the spans of traced calls. A nil *Provider is tracing
// off: its Interceptor is nil and its Shutdown does nothing.
type Provider struct {
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
}

// Start returns the provider of s, exporting in the background, or nil
// when s is not enabled. s must have passed Validate. Call Shutdown to
// flush and stop it.
func Start(ctx context.Context, s Settings, o Options) (*Provider, error) {
	if !s.Enabled {
		return nil, nil
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	proto, err := s.protocol(o.Getenv)
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	exp, err := newExporter(ctx, &s, proto)
	if err != nil {
		return nil, fmt.Errorf("tracing: %s exporter: %w", proto, err)
	}
	res, err := newResource(ctx, &s, o.Version)
	if err != nil {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	if o.Logger != nil {
		logErrors(o.Logger)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(s.samplingRatio()))),
	)
	return &Provider{tp: tp, tracer: tp.Tracer(instrumentationName), prop: propagation.TraceContext{}}, nil
}

// Shutdown exports the spans still queued and stops the exporter, within
// ctx's deadline. It is safe on a nil Provider.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: flush spans: %w", err)
	}
	return nil
}

// newExporter returns the OTLP exporter of s over proto. It connects
// lazily: a collector that is down at start costs spans, not the start.
func newExporter(ctx context.Context, s *Settings, proto Protocol) (sdktrace.SpanExporter, error) {
	headers := make(map[string]string, len(s.Headers))
	for k, v := range s.Headers {
		headers[k] = string(v)
	}
	isURL := s.Endpoint != "" && isURLEndpoint(s.Endpoint)
	switch proto {
	case ProtocolGRPC:
		var opts []otlptracegrpc.Option
		if len(headers) > 0 { // else OTEL_EXPORTER_OTLP_HEADERS apply
			opts = append(opts, otlptracegrpc.WithHeaders(headers))
		}
		switch {
		case isURL:
			opts = append(opts, otlptracegrpc.WithEndpointURL(s.Endpoint))
		case s.Endpoint != "":
			opts = append(opts, otlptracegrpc.WithEndpoint(s.Endpoint))
		}
		if s.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		return otlptracegrpc.New(ctx, opts...)
	case ProtocolHTTP:
		var opts []otlptracehttp.Option
		if len(headers) > 0 {
			opts = append(opts, otlptracehttp.WithHeaders(headers))
		}
		switch {
		case isURL:
			opts = append(opts, otlptracehttp.WithEndpointURL(withTracesPath(s.Endpoint)))
		case s.Endpoint != "":
			opts = append(opts, otlptracehttp.WithEndpoint(s.Endpoint))
		}
		if s.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, errors.New("no protocol")
}

// withTracesPath returns URL e with OTLP/HTTP's traces path, /v1/traces,
// when it has no path (a path given is used as is).
func withTracesPath(e string) string {
	u, err := url.Parse(e)
	if err != nil || u.Path != "" {
		return e
	}
	u.Path = "/v1/traces"
	return u.String()
}

// isURLEndpoint reports whether e is a URL (http:// or https://) rather
// than host:port.
func isURLEndpoint(e string) bool {
	u, err := url.Parse(e)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

// newResource describes this process: defaults (service.name extauthz, a
// random service.instance.id, as envoyproxy/ratelimit), then
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES, then the settings; each
// overrides the one before.
func newResource(ctx context.Context, s *Settings, version string) (*resource.Resource, error) {
	defaults := []attribute.KeyValue{attribute.String("service.name", DefaultServiceName)}
	id, err := uuid.NewRandom()
	if err != nil {
		return nil, fmt.Errorf("service.instance.id: %w", err)
	}
	defaults = append(defaults, attribute.String("service.instance.id", id.String()))
	var set []attribute.KeyValue
	for _, a := range []struct{ key, v string }{
		{"service.name", s.ServiceName}, {"service.namespace", s.ServiceNamespace},
		{"service.instance.id", s.ServiceInstanceID}, {"service.version", version},
	} {
		if a.v != "" {
			set = append(set, attribute.String(a.key, a.v))
		}
	}
	return resource.New(ctx, resource.WithTelemetrySDK(), resource.WithAttributes(defaults...), resource.WithFromEnv(),
		resource.WithAttributes(set...))
}

// logErrors makes log receive OpenTelemetry's errors (a collector that is
// down or refuses spans), at most one warning per logging.DefaultEvery.
// OpenTelemetry's error handler is process-wide.
func logErrors(log *slog.Logger) {
	var th logging.Throttle
	otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) {
		th.Warn(context.Background(), log, "export", "tracing: spans not exported; check tracing.endpoint, "+
			"tracing.protocol and that the collector is up", "err", err)
	}))
}
