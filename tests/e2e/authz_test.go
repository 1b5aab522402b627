package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// authzExample is the ext_authz example's extauthz config, run as is: 100
// requests a minute per client IP, API-key tiers, tenants.
func authzExample(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "examples", "envoy", "ext_authz", "extauthz-authz.yaml")
}

// authzClient dials p's Authorization service. A build that does not serve
// it yet (cmd/extauthz without the registerAuthz wiring) skips locally and
// fails on CI.
func authzClient(t *testing.T, p *Process) authv3.AuthorizationClient {
	t.Helper()
	c := authv3.NewAuthorizationClient(p.Dial(t))
	_, err := c.Check(context.Background(), &authv3.CheckRequest{})
	if status.Code(err) == codes.Unimplemented {
		msg := "extauthz serve does not register envoy.service.auth.v3.Authorization (cmd/extauthz: call registerAuthz)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return c
}

// authzCheckReq is the CheckRequest Envoy sends for a client at peer (Envoy
// appends peer to X-Forwarded-For, use_remote_address: true).
func authzCheckReq(peer, path string, kv ...string) *authv3.CheckRequest {
	h := map[string]string{"x-forwarded-for": peer}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
		if kv[i] == "x-forwarded-for" {
			h[kv[i]] = kv[i+1] + ", " + peer
		}
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: peer, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 41000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "localhost:10000", Path: path, Headers: h,
		}},
	}}
}

// authzHeaders flattens header options.
func authzHeaders(hs []*corev3.HeaderValueOption) map[string]string {
	m := make(map[string]string, len(hs))
	for _, h := range hs {
		m[strings.ToLower(h.GetHeader().GetKey())] = h.GetHeader().GetValue()
	}
	return m
}

// awayFromMinuteEnd waits, when less than margin is left of the current
// minute, for the next one, so that a burst of requests stays inside one
// fixed window.
func awayFromMinuteEnd(margin time.Duration) {
	if left := time.Minute - time.Duration(time.Now().UnixNano())%time.Minute; left < margin {
		time.Sleep(left + 50*time.Millisecond)
	}
}

func TestAuthzCheck(t *testing.T) {
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", authzExample(t)}})
	c := authzClient(t, p)
	ctx := context.Background()
	check := func(req *authv3.CheckRequest) *authv3.CheckResponse {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		resp, err := c.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return resp
	}

	t.Run("health", func(t *testing.T) {
		resp, err := healthpb.NewHealthClient(p.Dial(t)).Check(ctx, &healthpb.HealthCheckRequest{Service: "envoy.service.auth.v3.Authorization"})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of the Authorization service: got %v, %v; want SERVING", resp.GetStatus(), err)
		}
	})

	t.Run("allowed, then 429 with headers and Retry-After", func(t *testing.T) {
		awayFromMinuteEnd(10 * time.Second)
		const client = "198.51.100.10"
		resp := check(authzCheckReq(client, "/", "x-forwarded-for", "1.2.3.4")) // spoofed entry: ignored
		ok := resp.GetOkResponse()
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || ok == nil {
			t.Fatalf("first request: got status %v, want OK with an OkHttpResponse", resp.GetStatus())
		}
		h := authzHeaders(ok.GetResponseHeadersToAdd())
		if h["x-ratelimit-limit"] != "100" || h["x-ratelimit-remaining"] != "99" || h["x-ratelimit-reset"] == "" {
			t.Errorf("first request: got response headers %v, want limit 100, remaining 99 and a reset", h)
		}
		for i := 2; i <= 100; i++ {
			if resp := check(authzCheckReq(client, fmt.Sprintf("/%d", i))); resp.GetOkResponse() == nil {
				t.Fatalf("request %d: got %v, want OK", i, resp.GetStatus())
			}
		}
		resp = check(authzCheckReq(client, "/101"))
		d := resp.GetDeniedResponse()
		if codes.Code(resp.GetStatus().GetCode()) != codes.ResourceExhausted || d == nil || d.GetStatus().GetCode() != 429 {
			t.Fatalf("request 101: got status %v, denied %v; want RESOURCE_EXHAUSTED with HTTP 429", resp.GetStatus(), d)
		}
		h = authzHeaders(d.GetHeaders())
		if h["x-ratelimit-limit"] != "100" || h["x-ratelimit-remaining"] != "0" || h["retry-after"] == "" || h["content-type"] != "application/json" {
			t.Errorf("request 101: got headers %v, want limit 100, remaining 0, Retry-After and a JSON content type", h)
		}
		var body struct {
			Code  string `json:"code"`
			Limit struct {
				Name            string `json:"name"`
				RequestsPerUnit int    `json:"requests_per_unit"`
			} `json:"limit"`
			RetryAfter int `json:"retry_after_seconds"`
		}
		if err := json.Unmarshal([]byte(d.GetBody()), &body); err != nil {
			t.Fatalf("request 101: body %q: %v", d.GetBody(), err)
		}
		if body.Code != "over_limit" || body.Limit.Name != "per-ip" || body.Limit.RequestsPerUnit != 100 || body.RetryAfter < 1 || fmt.Sprint(body.RetryAfter) != h["retry-after"] {
			t.Errorf("request 101: got body %+v, want over_limit of per-ip (100) with retry_after_seconds = Retry-After %s", body, h["retry-after"])
		}
		// Another client is not affected.
		if resp := check(authzCheckReq("198.51.100.11", "/")); resp.GetOkResponse() == nil {
			t.Errorf("another client: got %v, want OK", resp.GetStatus())
		}
	})

	t.Run("api key tier and upstream headers", func(t *testing.T) {
		resp := check(authzCheckReq("198.51.100.20", "/", "authorization", "Bearer demo-pro-key", "x-tenant", "forged"))
		ok := resp.GetOkResponse()
		if ok == nil {
			t.Fatalf("got %v, want OK", resp.GetStatus())
		}
		up := authzHeaders(ok.GetHeaders())
		if up["x-tenant"] != "acme" || up["x-plan"] != "pro" || up["x-api-key-id"] != "acme-prod" {
			t.Errorf("got upstream headers %v, want x-tenant acme, x-plan pro, x-api-key-id acme-prod", up)
		}
		for _, v := range up {
			if strings.Contains(v, "demo-pro-key") {
				t.Errorf("upstream headers carry the API key in clear: %v", up)
			}
		}
	})

	t.Run("no client address is refused", func(t *testing.T) {
		req := authzCheckReq("198.51.100.30", "/")
		delete(req.Attributes.Request.Http.Headers, "x-forwarded-for")
		resp := check(req)
		if d := resp.GetDeniedResponse(); d == nil || d.GetStatus().GetCode() != 403 || !strings.Contains(d.GetBody(), "missing_source") {
			t.Errorf("got %v, want a 403 naming the missing source", resp)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		code, body := p.Get(t, "/metrics")
		if code != 200 {
			t.Fatalf("GET /metrics: %d", code)
		}
		for _, want := range []string{
			`extauthz_requests_total{api="authz",code="ok",domain="edge_authz"}`,
			`extauthz_requests_total{api="authz",code="over_limit",domain="edge_authz"} 1`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		if strings.Contains(body, "demo-pro-key") {
			t.Error("/metrics shows an API key")
		}
	})
}

// TestAuthzCheckBackendFailure: with the only backend down, Check follows
// failure_mode: envoy → gRPC UNAVAILABLE (Envoy's failure_mode_allow
// decides), closed → 429, open → OK.
func TestAuthzCheckBackendFailure(t *testing.T) {
	dead := FreeAddr(t) // nothing listens there
	for _, tc := range []struct {
		mode     string
		wantErr  codes.Code
		wantHTTP int // 0: allowed
	}{
		{mode: "envoy", wantErr: codes.Unavailable},
		{mode: "closed", wantHTTP: 429},
		{mode: "open"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := fmt.Sprintf(`backends:
  - type: redis
    url: redis://%s/0
breaker:
  call_timeout: 50ms
failure_mode: %s
readiness: always
domains:
  - domain: web
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 100}
authz:
  domain: web
  descriptors:
    - entries: [{from: client_ip}]
`, dead, tc.mode)
			path := WriteFile(t, t.TempDir(), "extauthz-authz.yaml", cfg)
			p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
			c := authzClient(t, p)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c.Check(ctx, authzCheckReq("198.51.100.40", "/"))
			if got := status.Code(err); got != tc.wantErr {
				t.Fatalf("got %v (%v), want code %v", got, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			switch {
			case tc.wantHTTP == 0 && resp.GetOkResponse() == nil:
				t.Errorf("got %v, want OK", resp)
			case tc.wantHTTP != 0 && resp.GetDeniedResponse().GetStatus().GetCode() != 429:
				t.Errorf("got %v, want a 429", resp)
			}
		})
	}
}
