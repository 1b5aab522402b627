package server

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Span attributes the server adds to a traced call's span (pkg/tracing
// starts and ends it). Each is bounded: a domain of the rules (or
// unknownDomain), a count, a code or failure name; never a descriptor
// value, which may be a secret (an API key) and has no bound.
const (
	attrDomain       = attribute.Key("ratelimit.domain")
	attrDescriptors  = attribute.Key("ratelimit.descriptors")
	attrCode         = attribute.Key("ratelimit.code")
	attrStoreFailure = attribute.Key("ratelimit.store_failure")
)

// traceDecision adds a call's domain, descriptor count and code to the
// span in ctx, if it records. Callers check Server.traced first, so that
// tracing off costs nothing.
func traceDecision(ctx context.Context, lv *live, domain string, descriptors int, code codeID) {
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	if !lv.snap.rules.HasDomain(domain) {
		domain = unknownDomain
	}
	span.SetAttributes(attrDomain.String(domain), attrDescriptors.Int(descriptors), attrCode.String(codeNames[code]))
}

// traceStoreFailure marks the span in ctx as failed by the store, with the
// answer given instead (failure mode, canceled or internal): a fail-open
// answer is OK to the caller but not to whoever reads the trace. The
// store's error text is left out (it may name counter keys).
func (s *Server) traceStoreFailure(ctx context.Context, f failureID) {
	if !s.traced {
		return
	}
	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(attrStoreFailure.String(failureNames[f]))
	span.SetStatus(otelcodes.Error, "rate limit store failed; answered "+failureNames[f])
}
