package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// edgeRules is an envoyproxy/ratelimit rule file, verbatim format.
const edgeRules = `domain: edge
descriptors:
  # Each client IP: 3 per hour.
  - key: remote_address
    rate_limit:
      unit: hour
      requests_per_unit: 3

  # A named path limit, and a shadow one.
  - key: path
    value: /login
    rate_limit:
      name: login
      unit: hour
      requests_per_unit: 1
  - key: path
    value: /beta
    shadow_mode: true
    rate_limit:
      unit: hour
      requests_per_unit: 1

  # Internal callers are not limited.
  - key: source_cluster
    value: internal
    rate_limit:
      unlimited: true

  # Per-user limit, replaced for premium users.
  - key: user
    rate_limit:
      name: per_user
      unit: minute
      requests_per_unit: 1
  - key: plan
    value: premium
    rate_limit:
      name: premium
      unit: minute
      requests_per_unit: 100
      replaces:
        - name: per_user

  # Nested descriptors.
  - key: client_id
    value: foo
    descriptors:
      - key: path
        rate_limit:
          unit: hour
          requests_per_unit: 2
`

const serverConfig = `response_headers:
  enabled: true
  draft: true
over_limit_body: true
rules_dir: rules
`

// startRLS writes the config and rule file to a temp dir and starts
// extauthz on it, with the config and addresses passed in the environment.
func startRLS(t *testing.T) *Process {
	t.Helper()
	dir := t.TempDir()
	cfg := WriteFile(t, dir, "extauthz.yaml", serverConfig)
	WriteFile(t, dir, "rules/edge.yaml", edgeRules)
	return Start(t, Options{Binary: extauthzBin, Env: []string{"EXTAUTHZ_CONFIG=" + cfg}, AddrsFromEnv: true})
}

func desc(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func fmtStatus(s *rlsv3.RateLimitResponse_DescriptorStatus) string {
	out := s.GetCode().String()
	if l := s.GetCurrentLimit(); l != nil {
		out += fmt.Sprintf(" %s %d/%s remaining=%d", l.GetName(), l.GetRequestsPerUnit(), l.GetUnit(), s.GetLimitRemaining())
		if d := s.GetDurationUntilReset().AsDuration(); d <= 0 || d > time.Hour {
			out += fmt.Sprintf(" bad-reset=%v", d)
		}
	} else if s.GetLimitRemaining() != 0 {
		out += fmt.Sprintf(" remaining=%d", s.GetLimitRemaining())
	}
	return out
}

func headerMap(resp *rlsv3.RateLimitResponse) map[string]string {
	m := map[string]string{}
	for _, h := range resp.GetResponseHeadersToAdd() {
		m[h.GetKey()] = h.GetValue()
	}
	return m
}

func TestRateLimitService(t *testing.T) {
	p := startRLS(t)
	conn := p.Dial(t)
	rls := rlsv3.NewRateLimitServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	call := func(req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
		t.Helper()
		resp, err := rls.ShouldRateLimit(ctx, req)
		if err != nil {
			t.Fatalf("ShouldRateLimit(%v): %v", req, err)
		}
		return resp
	}

	t.Run("per-IP limit, headers, raw_body", func(t *testing.T) {
		req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.0.0.1")}}
		for i, wantRemaining := range []int{2, 1, 0} {
			resp := call(req)
			if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				t.Fatalf("call %d: got %v, want OK", i, resp.GetOverallCode())
			}
			want := fmt.Sprintf("OK edge.remote_address 3/HOUR remaining=%d", wantRemaining)
			if got := fmtStatus(resp.GetStatuses()[0]); got != want {
				t.Errorf("call %d: got status %q, want %q", i, got, want)
			}
			h := headerMap(resp)
			if h["X-RateLimit-Limit"] != "3" || h["X-RateLimit-Remaining"] != fmt.Sprint(wantRemaining) || h["X-RateLimit-Reset"] == "" {
				t.Errorf("call %d: got headers %v, want limit 3, remaining %d and a reset", i, h, wantRemaining)
			}
			if _, ok := h["Retry-After"]; ok {
				t.Errorf("call %d: got Retry-After on an admitted request", i)
			}
		}
		resp := call(req)
		if resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Fatalf("4th call: got %v, want OVER_LIMIT", resp.GetOverallCode())
		}
		h := headerMap(resp)
		if h["Retry-After"] == "" || h["Retry-After"] == "0" || h["content-type"] != "application/json" {
			t.Errorf("4th call: got headers %v, want Retry-After >= 1 and content-type application/json", h)
		}
		if !strings.HasPrefix(h["RateLimit-Policy"], `"edge.remote_address";q=3;w=3600`) || !strings.HasPrefix(h["RateLimit"], `"edge.remote_address";r=0;t=`) {
			t.Errorf("4th call: got draft fields %q and %q", h["RateLimit-Policy"], h["RateLimit"])
		}
		if body := string(resp.GetRawBody()); !strings.Contains(body, `"name":"edge.remote_address"`) || !strings.Contains(body, `"code":"over_limit"`) {
			t.Errorf("4th call: got raw_body %s, want the refusing limit named", body)
		}
	})

	t.Run("statuses per descriptor in order", func(t *testing.T) {
		req := &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{
			desc("path", "/login"),
			desc("path", "/beta"),
			desc("source_cluster", "internal"),
			desc("user", "alice"),
			desc("plan", "premium"),
			desc("client_id", "foo", "path", "/x"),
			desc("unknown", "v"),
		}}
		want1 := []string{
			"OK login 1/HOUR remaining=0",
			"OK edge.path_/beta 1/HOUR remaining=0",
			"OK remaining=4294967295",
			"OK",
			"OK premium 100/MINUTE remaining=99",
			"OK edge.client_id_foo.path 2/HOUR remaining=1",
			"OK",
		}
		want2 := []string{
			"OVER_LIMIT login 1/HOUR remaining=0",
			"OK edge.path_/beta 1/HOUR remaining=0", // shadow: never refuses
			"OK remaining=4294967295",
			"OK",
			"OK premium 100/MINUTE remaining=98",
			"OK edge.client_id_foo.path 2/HOUR remaining=0",
			"OK",
		}
		for i, want := range [][]string{want1, want2} {
			resp := call(req)
			var got []string
			for _, s := range resp.GetStatuses() {
				got = append(got, fmtStatus(s))
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("call %d: got statuses\n  %s\nwant\n  %s", i, strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}
			wantCode := []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT}[i]
			if resp.GetOverallCode() != wantCode {
				t.Errorf("call %d: got %v, want %v", i, resp.GetOverallCode(), wantCode)
			}
		}
	})

	t.Run("hits_addend and limit override", func(t *testing.T) {
		resp := call(&rlsv3.RateLimitRequest{Domain: "edge", HitsAddend: 3, Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.0.0.2")}})
		if got := fmtStatus(resp.GetStatuses()[0]); got != "OK edge.remote_address 3/HOUR remaining=0" {
			t.Errorf("hits_addend 3: got %q", got)
		}
		d := desc("remote_address", "10.0.0.3")
		d.HitsAddend = wrapperspb.UInt64(2)
		d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 10, Unit: 2 /* MINUTE */}
		resp = call(&rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{d}})
		if got := fmtStatus(resp.GetStatuses()[0]); got != "OK edge.(override) 10/MINUTE remaining=8" {
			t.Errorf("override: got %q", got)
		}
	})

	t.Run("unknown domain is OK", func(t *testing.T) {
		resp := call(&rlsv3.RateLimitRequest{Domain: "other", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.0.0.1")}})
		if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || fmtStatus(resp.GetStatuses()[0]) != "OK" {
			t.Errorf("got %v %v, want OK with a bare OK status", resp.GetOverallCode(), resp.GetStatuses())
		}
	})

	t.Run("invalid requests", func(t *testing.T) {
		for _, tc := range []struct {
			req  *rlsv3.RateLimitRequest
			want string
		}{
			{req: &rlsv3.RateLimitRequest{Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("a", "b")}}, want: "empty domain"},
			{req: &rlsv3.RateLimitRequest{Domain: "edge"}, want: "no descriptors"},
			{req: &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("", "b")}}, want: "empty key"},
		} {
			_, err := rls.ShouldRateLimit(ctx, tc.req)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Errorf("got %v, want InvalidArgument mentioning %q", err, tc.want)
			}
		}
	})

	t.Run("health and reflection", func(t *testing.T) {
		for _, svc := range []string{"", "envoy.service.ratelimit.v3.RateLimitService"} {
			resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health %q: got %v, %v; want SERVING", svc, resp, err)
			}
		}
		stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			t.Fatalf("reflection: %v", err)
		}
		if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatalf("reflection send: %v", err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("reflection recv: %v", err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, " "), "envoy.service.ratelimit.v3.RateLimitService") {
			t.Errorf("reflection lists %v, want the RateLimitService", names)
		}
		_ = stream.CloseSend()
	})

	t.Run("admin endpoints", func(t *testing.T) {
		if code, body := p.Get(t, "/healthz"); code != 200 || body != "ok\n" {
			t.Errorf("/healthz: got %d %q", code, body)
		}
		code, body := p.Get(t, "/metrics")
		for _, want := range []string{
			`extauthz_requests_total{api="ratelimit",code="over_limit",domain="edge"}`,
			`extauthz_requests_total{api="ratelimit",code="invalid_argument",domain="_unknown"} 1`,
			`extauthz_requests_total{api="ratelimit",code="invalid_argument",domain="edge"} 2`,
			`extauthz_rule_decisions_total{domain="edge",outcome="shadow",rule="edge.path_/beta"} 1`,
			`extauthz_request_duration_seconds_bucket{api="ratelimit",code="ok",le=`,
			"go_goroutines ", "process_resident_memory_bytes ",
		} {
			if code != 200 || !strings.Contains(body, want) {
				t.Errorf("/metrics (status %d) lacks %q", code, want)
			}
		}
		if strings.Contains(body, "10.0.0.1") {
			t.Errorf("/metrics shows a descriptor value")
		}
		code, body = p.Get(t, "/config")
		if code != 200 || !strings.Contains(body, "domain: edge") || !strings.Contains(body, "requests_per_unit: 3") {
			t.Errorf("/config: got %d\n%s", code, body)
		}
	})
}

func TestServeFlagsOverrideEnvironment(t *testing.T) {
	dir := t.TempDir()
	cfg := WriteFile(t, dir, "extauthz.yaml", serverConfig)
	WriteFile(t, dir, "rules/edge.yaml", edgeRules)
	// The environment names a missing file; --config wins.
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}, Env: []string{"EXTAUTHZ_CONFIG=" + filepath.Join(dir, "missing.yaml")}})
	if code, _ := p.Get(t, "/readyz"); code != 200 {
		t.Errorf("/readyz: got %d, want 200", code)
	}
}
