package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

// Regression tests of issue 16, findings 1, 2 and 8: identities are taken
// only from what a client cannot forge, API keys are matched by digest on
// both APIs, and a raw key never shows.

// checkOK calls Check and returns its OkHttpResponse (nil when denied).
func checkOK(t *testing.T, c authv3.AuthorizationClient, req *authv3.CheckRequest) *authv3.OkHttpResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp.GetOkResponse()
}

// shouldRateLimit calls ShouldRateLimit with one descriptor.
func shouldRateLimit(t *testing.T, c rlsv3.RateLimitServiceClient, domain string, kv ...string) *rlsv3.RateLimitResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{desc(kv...)}})
	if err != nil {
		t.Fatalf("ShouldRateLimit(%v): %v", kv, err)
	}
	return resp
}

// TestIdentityTenantHeader (finding 1): with the shipped ext_authz example
// as it stands, a client-sent x-tenant-id neither escapes the per-IP limit
// nor buys a listed tenant's tier; a config with an untrusted tenant header
// does not validate nor serve.
func TestIdentityTenantHeader(t *testing.T) {
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", authzExample(t)}})
	c := authzClient(t, p)

	t.Run("a tenant per request does not escape the per-IP limit", func(t *testing.T) {
		awayFromMinuteEnd(20 * time.Second)
		allowed := 0
		for i := range 150 {
			if checkOK(t, c, authzCheckReq("198.51.100.60", "/", "x-tenant-id", fmt.Sprintf("t%d", i))) != nil {
				allowed++
			}
		}
		if allowed != 100 {
			t.Errorf("150 Checks from one IP, each with another x-tenant-id: %d allowed, want 100 (per-ip 100/minute)", allowed)
		}
	})

	t.Run("x-tenant-id: acme without a key gets no tier", func(t *testing.T) {
		ok := checkOK(t, c, authzCheckReq("198.51.100.61", "/", "x-tenant-id", "acme"))
		if ok == nil {
			t.Fatal("got a denial, want OK")
		}
		up := authzHeaders(ok.GetHeaders())
		if _, set := up["x-plan"]; set || up["x-tenant"] != "" {
			t.Errorf("got upstream headers %v, want neither x-plan nor x-tenant", up)
		}
		removed := strings.Join(ok.GetHeadersToRemove(), ",")
		if !strings.Contains(removed, "x-plan") || !strings.Contains(removed, "x-tenant") {
			t.Errorf("got headers to remove %q, want x-plan and x-tenant removed", removed)
		}
	})

	t.Run("an untrusted tenant header is a config error", func(t *testing.T) {
		cfg := WriteFile(t, t.TempDir(), "untrusted.yaml", `domains:
  - domain: web
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 100}
authz:
  domain: web
  tenant:
    sources: [{header: x-tenant-id}]
  descriptors:
    - entries: [{from: client_ip}]
`)
		want := "authz.tenant.sources[0].header: a client can send any x-tenant-id: set trusted: true only if a proxy in front of extauthz sets this header and removes the client's, or remove this source"
		for _, cmd := range []string{"validate", "serve"} {
			args := []string{cmd, "--config", cfg}
			if cmd == "serve" {
				args = append(args, "--grpc-addr", FreeAddr(t), "--http-addr", FreeAddr(t))
			}
			res := Run(t, extauthzBin, nil, args...)
			if res.Code == 0 || !strings.Contains(res.Stderr, want) {
				t.Errorf("%s: exit %d, stderr %q; want a failure with %q", cmd, res.Code, res.Stderr, want)
			}
		}
	})
}

// TestIdentityRLSKeyByDigest (finding 2): on ShouldRateLimit the api_key
// value is the key, matched by digest: the listed key's id is an unlisted
// key, and Check and ShouldRateLimit count one key on one counter.
func TestIdentityRLSKeyByDigest(t *testing.T) {
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", authzExample(t)}})
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	c := authzClient(t, p)
	awayFromMinuteEnd(10 * time.Second)

	limitOf := func(resp *rlsv3.RateLimitResponse) string {
		st := resp.GetStatuses()[0]
		return fmt.Sprintf("%d remaining=%d", st.GetCurrentLimit().GetRequestsPerUnit(), st.GetLimitRemaining())
	}
	if got := limitOf(shouldRateLimit(t, rls, "edge_authz", "api_key", "acme-prod")); got != "5 remaining=4" {
		t.Errorf("api_key=acme-prod (an id): got %s, want the unlisted 5/minute, remaining 4", got)
	}
	if got := limitOf(shouldRateLimit(t, rls, "edge_authz", "api_key", "demo-pro-key")); got != "1000 remaining=999" {
		t.Errorf("api_key=demo-pro-key (the pro key): got %s, want 1000/minute, remaining 999", got)
	}

	// One counter per key across both APIs: hobbyist (no tenant, so no
	// namespace) has 120/minute until 2030; an unlisted key 5.
	for _, tc := range []struct{ key, want string }{
		{"demo-free-key", "120 remaining=117"},
		{"some-unlisted-key", "5 remaining=2"},
	} {
		if checkOK(t, c, authzCheckReq("198.51.100.70", "/", "x-api-key", tc.key)) == nil {
			t.Fatalf("Check with %s: denied, want OK", tc.key)
		}
		shouldRateLimit(t, rls, "edge_authz", "api_key", tc.key)
		if got := limitOf(shouldRateLimit(t, rls, "edge_authz", "api_key", tc.key)); got != tc.want {
			t.Errorf("%s after one Check and two ShouldRateLimit: got %s, want %s", tc.key, got, tc.want)
		}
	}

	res := Run(t, extauthzBin, nil, "explain", "--config", authzExample(t), "--domain", "edge_authz", "--descriptor", "api_key=demo-pro-key")
	if res.Code != 0 || !strings.Contains(res.Stdout, "api_key=acme-prod") || strings.Contains(res.Stdout, "demo-pro-key") {
		t.Errorf("explain --descriptor api_key=demo-pro-key: exit %d, output:\n%s\nwant the listed id acme-prod and never the key", res.Code, res.Stdout+res.Stderr)
	}
}

// keysConfig lists demo-pro-key (by digest) as acme-prod; its rule file
// names the key in clear, and a detailed_metric rule labels by value.
const keysConfig = `backends: [{type: memory}]
domains:
  - domain: edge
    descriptors:
      - key: api_key
        value: demo-pro-key
        rate_limit: {unit: minute, requests_per_unit: 2}
      - key: api_key
        value: raw-unlisted-secret
        rate_limit: {unit: minute, requests_per_unit: 2}
      - key: api_key
        detailed_metric: true
        rate_limit: {unit: minute, requests_per_unit: 2}
authz:
  domain: edge
  api_key:
    sources: [{header: x-api-key}]
  api_keys:
    # printf %s demo-pro-key | sha256sum
    - {id: acme-prod, key_sha256: 1fbfd5e2a34698deb796eb78add256a067ec065519b8329b1eb85f5e2ef906d4}
  descriptors:
    - entries: [{from: api_key}]
`

// TestIdentityKeysNeverInClear (finding 8): raw keys in a rule file and in
// requests on both APIs never reach /metrics, /config or the debug log.
func TestIdentityKeysNeverInClear(t *testing.T) {
	cfg := WriteFile(t, t.TempDir(), "keys.yaml", keysConfig)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg, "--log-level", "debug"}})
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	c := authzClient(t, p)
	awayFromMinuteEnd(10 * time.Second)

	secrets := []string{"demo-pro-key", "raw-unlisted-secret", "other-unlisted-secret"}
	for _, key := range secrets {
		for range 3 { // the third is over the limit, which logs at debug level
			shouldRateLimit(t, rls, "edge", "api_key", key)
			checkOK(t, c, authzCheckReq("198.51.100.80", "/", "x-api-key", key))
		}
	}
	_, metrics := p.Get(t, "/metrics")
	code, config := p.Get(t, "/config")
	if code != 200 {
		t.Fatalf("GET /config: %d", code)
	}
	for _, want := range []string{`rule="edge.api_key_acme-prod"`, `rule="edge.api_key_sha256:`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(config, "value: acme-prod") || !strings.Contains(config, "value: sha256:") {
		t.Errorf("/config does not show the rule values canonical:\n%s", config)
	}
	if logs := p.Logs(); !strings.Contains(logs, "over limit") {
		t.Errorf("no over-limit debug log: the test would prove nothing about logs:\n%s", logs)
	}
	for _, key := range secrets {
		for what, text := range map[string]string{"/metrics": metrics, "/config": config, "the log": p.Logs()} {
			if strings.Contains(text, key) {
				t.Errorf("%s shows the API key %q", what, key)
			}
		}
	}
}
