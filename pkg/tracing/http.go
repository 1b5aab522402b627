package tracing

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// HTTP span attributes (OpenTelemetry's HTTP conventions).
const (
	attrHTTPMethod = attribute.Key("http.request.method")
	attrHTTPRoute  = attribute.Key("http.route")
	attrHTTPStatus = attribute.Key("http.response.status_code")
)

// HTTP returns h traced: a server span named "METHOD route" per request,
// child of the W3C trace context in the request's headers, with the
// response status (an error status from 500 on). route is the handler's
// fixed pattern, e.g. "/json", never the request's path. For a nil
// Provider (tracing off) it returns h itself. The handler finds the span
// in the request's context.
func (p *Provider) HTTP(route string, h http.Handler) http.Handler {
	if p == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := p.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		method := r.Method
		if method != http.MethodPost && method != http.MethodGet {
			method = "_OTHER" // the conventions' bound on a client-chosen value
		}
		ctx, span := p.tracer.Start(ctx, method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attrHTTPMethod.String(method), attrHTTPRoute.String(route)))
		defer span.End()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r.WithContext(ctx))
		span.SetAttributes(attrHTTPStatus.Int(sw.code))
		if sw.code >= 500 {
			span.SetStatus(otelcodes.Error, http.StatusText(sw.code))
		}
	})
}

// statusWriter records the status a handler answers with.
type statusWriter struct {
	http.ResponseWriter
	code    int
	written bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.written {
		w.code, w.written = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.written = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (read
// deadlines, flushing).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
