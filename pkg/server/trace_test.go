package server

import (
	"context"
	"fmt"
	"strings"
	"testing"

	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/extauthz/extauthz/pkg/backends/chain"
)

// tracedCall runs call with a recording span in its context and returns
// the span's attributes (as "key=value") and status once ended.
func tracedCall(t *testing.T, call func(ctx context.Context)) (map[string]string, sdktrace.Status) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	ctx, span := tp.Tracer("test").Start(context.Background(), "call")
	call(ctx)
	span.End()
	ended := rec.Ended()
	if len(ended) != 1 {
		t.Fatalf("got %d spans", len(ended))
	}
	attrs := map[string]string{}
	for _, kv := range ended[0].Attributes() {
		attrs[string(kv.Key)] = kv.Value.String()
	}
	return attrs, ended[0].Status()
}

func TestTraceDecision(t *testing.T) {
	const secret = "sk_live_0123456789abcdef"
	tests := []struct {
		name      string
		traced    bool
		failure   chain.FailureMode
		fail      bool
		req       func() any
		authz     bool
		want      map[string]string
		wantError bool
	}{
		{name: "rls ok", traced: true, want: map[string]string{"ratelimit.domain": "edge", "ratelimit.descriptors": "2", "ratelimit.code": "ok"}},
		{name: "rls unknown domain", traced: true, want: map[string]string{"ratelimit.domain": "_unknown", "ratelimit.descriptors": "2", "ratelimit.code": "ok"}},
		{name: "rls fail open", traced: true, fail: true, failure: chain.FailOpen,
			want: map[string]string{"ratelimit.domain": "edge", "ratelimit.code": "ok", "ratelimit.store_failure": "ok"}, wantError: true},
		{name: "rls fail envoy", traced: true, fail: true, failure: chain.FailEnvoy,
			want: map[string]string{"ratelimit.code": "unavailable", "ratelimit.store_failure": "unavailable"}, wantError: true},
		{name: "rls untraced", traced: false, want: map[string]string{}},
		{name: "check ok", traced: true, authz: true, want: map[string]string{"ratelimit.domain": "web", "ratelimit.descriptors": "2", "ratelimit.code": "ok"}},
		{name: "check fail closed", traced: true, authz: true, fail: true, failure: chain.FailClosed,
			want: map[string]string{"ratelimit.domain": "web", "ratelimit.code": "over_limit", "ratelimit.store_failure": "over_limit"}, wantError: true},
		{name: "check untraced", traced: false, authz: true, want: map[string]string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			settings := Settings{Failure: chain.FailurePolicy{Default: tc.failure}}
			var call func(ctx context.Context)
			if tc.authz {
				e := newAuthzEnv(t, settings, AuthzSettings{})
				e.srv.traced = tc.traced
				if tc.fail {
					e.store.fail(errBackend)
				}
				call = func(ctx context.Context) {
					_, _ = e.authz.Check(ctx, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.7", "x-api-key", secret))
				}
			} else {
				e := newEnv(t, settings)
				e.srv.traced = tc.traced
				if tc.fail {
					e.store.fail(errBackend)
				}
				domain := "edge"
				if strings.Contains(tc.name, "unknown") {
					domain = "attacker-" + secret
				}
				call = func(ctx context.Context) {
					_, _ = e.srv.ShouldRateLimit(ctx, request(domain, desc("remote_address", "10.0.0.1"), desc("api_key", secret)))
				}
			}
			attrs, st := tracedCall(t, call)
			for k, v := range tc.want {
				if attrs[k] != v {
					t.Errorf("%s = %q, want %q (all: %v)", k, attrs[k], v, attrs)
				}
			}
			if len(tc.want) == 0 && len(attrs) != 0 {
				t.Errorf("untraced server set %v", attrs)
			}
			if got := st.Code == otelcodes.Error; got != tc.wantError {
				t.Errorf("status %v, want error %v", st, tc.wantError)
			}
			if all := fmt.Sprint(attrs, st); strings.Contains(all, secret) || strings.Contains(all, errBackend.Error()) {
				t.Errorf("span holds a request value or the store's error: %s", all)
			}
		})
	}
}
