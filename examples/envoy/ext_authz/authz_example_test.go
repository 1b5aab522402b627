// Package authzexample_test checks the ext_authz example offline: envoy.yaml
// wires the ext_authz filter to extauthz's gRPC port with explicit failure
// behaviour, and the requests Envoy would send for the README walkthrough get
// the answers the README shows, from the server's own Check handler over an
// in-memory store.
package authzexample_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/extauthz/extauthz/examples/envoy/envoycheck"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/server"
)

// now is before the hobbyist key's override expires (2030-01-01).
var now = time.Date(2027, 3, 1, 12, 0, 30, 0, time.UTC)

func TestEnvoyConfig(t *testing.T) {
	raw, err := os.ReadFile("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	b, err := envoycheck.ParseBootstrap(raw)
	if err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	s, err := envoycheck.RateLimits(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.ExtAuthzFilters) != 1 || len(s.RateLimitFilters) != 0 {
		t.Fatalf("got %d ext_authz and %d rate limit filters, want one ext_authz filter only", len(s.ExtAuthzFilters), len(s.RateLimitFilters))
	}
	if err := envoycheck.Lint(b, s); err != nil {
		t.Error(err)
	}
	f := s.ExtAuthzFilters[0].Config
	if !strings.Contains(string(raw), "failure_mode_allow: false") || f.GetFailureModeAllow() {
		t.Error("envoy.yaml: want failure_mode_allow: false, written out")
	}
	if got := f.GetStatusOnError().GetCode(); got != 503 {
		t.Errorf("status_on_error: got %d, want 503 (ServiceUnavailable)", got)
	}
	gs := f.GetGrpcService()
	if d := gs.GetTimeout().AsDuration(); d <= 0 || d > 200*time.Millisecond {
		t.Errorf("grpc_service.timeout: got %v, want an explicit timeout of at most Envoy's 200ms default", d)
	}
	if f.GetWithRequestBody() != nil {
		t.Error("with_request_body is set: Check needs headers only")
	}

	// The extauthz cluster points at grpc_addr's port.
	cfg := loadConfig(t)
	_, port, err := net.SplitHostPort(cfg.GRPCAddr)
	if err != nil {
		t.Fatal(err)
	}
	cluster := gs.GetEnvoyGrpc().GetClusterName()
	var got []string
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() != cluster {
			continue
		}
		for _, le := range c.GetLoadAssignment().GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				got = append(got, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
			}
		}
	}
	if want := net.JoinHostPort("extauthz", port); len(got) != 1 || got[0] != want {
		t.Errorf("cluster %q: got endpoints %v, want [%s]", cluster, got, want)
	}

	// Envoy appends the peer to X-Forwarded-For (use_remote_address: true,
	// no trusted hops), which is what authz.client_ip.trusted_hops: 1
	// relies on.
	if !strings.Contains(string(raw), "use_remote_address: true") || !strings.Contains(string(raw), "xff_num_trusted_hops: 0") {
		t.Error("envoy.yaml: want use_remote_address: true and xff_num_trusted_hops: 0 (extauthz trusts one hop)")
	}
	if cfg.Authz.ClientIP.TrustedHops != 1 {
		t.Errorf("extauthz-authz.yaml: got trusted_hops %d, want 1 (Envoy's entry)", cfg.Authz.ClientIP.TrustedHops)
	}
}

func loadConfig(t *testing.T) *config.Config {
	t.Helper()
	cfg, err := config.LoadFile("extauthz-authz.yaml")
	if err != nil {
		t.Fatalf("extauthz-authz.yaml: %v", err)
	}
	if cfg.Authz.Extractor() == nil {
		t.Fatal("extauthz-authz.yaml: authz section not compiled")
	}
	return cfg
}

// fixedClock is the store's and the handler's clock.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

// newCheck builds the Check handler of extauthz-authz.yaml over memory.
func newCheck(t *testing.T, clock *fixedClock) *server.Authz {
	t.Helper()
	cfg := loadConfig(t)
	mem, err := memstore.New(memstore.Options{Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	h := cfg.ResponseHeaders
	up := cfg.Authz.UpstreamHeaders
	snap, err := server.NewSnapshot(cfg.Rules, server.Settings{Headers: server.HeaderSettings{
		Enabled: h.Enabled, LimitHeader: h.LimitHeader, RemainingHeader: h.RemainingHeader, ResetHeader: h.ResetHeader, Draft: h.Draft,
	}, Authz: &server.AuthzSettings{
		Extractor: cfg.Authz.Extractor(), TenantHeader: up.Tenant, TierHeader: up.Tier, APIKeyIDHeader: up.APIKeyID, Now: clock.Now,
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Store: mem}, snap)
	if err != nil {
		t.Fatal(err)
	}
	a, err := server.NewAuthz(srv)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// envoyCheck is the CheckRequest Envoy sends for a request from client
// (the TCP peer) with the given headers: Envoy has appended client to
// X-Forwarded-For.
func envoyCheck(client, host string, headers ...string) *authv3.CheckRequest {
	h := map[string]string{}
	for i := 0; i+1 < len(headers); i += 2 {
		h[headers[i]] = headers[i+1]
	}
	if xff := h["x-forwarded-for"]; xff != "" {
		h["x-forwarded-for"] = xff + "," + client
	} else {
		h["x-forwarded-for"] = client
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: client, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: host, Path: "/", Headers: h,
		}},
	}}
}

// answer renders a CheckResponse: "200 name=value ..." for allowed
// requests (response headers, then "| upstream" headers), "429 ..." with
// the body for denied ones.
func answer(resp *authv3.CheckResponse) string {
	fmtHs := func(hs []*corev3.HeaderValueOption) string {
		var parts []string
		for _, h := range hs {
			parts = append(parts, h.GetHeader().GetKey()+"="+h.GetHeader().GetValue())
		}
		return strings.Join(parts, " ")
	}
	if ok := resp.GetOkResponse(); ok != nil {
		return fmt.Sprintf("200 %s | %s", fmtHs(ok.GetResponseHeadersToAdd()), fmtHs(ok.GetHeaders()))
	}
	d := resp.GetDeniedResponse()
	return fmt.Sprintf("%d %s %s", d.GetStatus().GetCode(), fmtHs(d.GetHeaders()), d.GetBody())
}

// TestWalkthrough replays the README walkthrough.
func TestWalkthrough(t *testing.T) {
	clock := &fixedClock{t: now}
	a := newCheck(t, clock)
	ctx := context.Background()
	check := func(req *authv3.CheckRequest) string {
		t.Helper()
		resp, err := a.Check(ctx, req)
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		return answer(resp)
	}

	// 1. A plain request, with a spoofed X-Forwarded-For.
	got := check(envoyCheck("172.18.0.1", "localhost:10000", "x-forwarded-for", "1.2.3.4"))
	if want := "200 X-RateLimit-Limit=100 X-RateLimit-Remaining=99 X-RateLimit-Reset=30 | "; got != want {
		t.Errorf("plain request: got %q, want %q", got, want)
	}

	// 2. The pro key: its tier, tenant and id go upstream; the key does not.
	got = check(envoyCheck("172.18.0.2", "localhost:10000", "authorization", "Bearer demo-pro-key"))
	if want := "200 X-RateLimit-Limit=100 X-RateLimit-Remaining=99 X-RateLimit-Reset=30 | x-tenant=acme x-plan=pro x-api-key-id=acme-prod"; got != want {
		t.Errorf("pro key: got %q, want %q", got, want)
	}
	if strings.Contains(got, "demo-pro-key") {
		t.Error("the API key reached the upstream headers in clear")
	}

	// 3. An unlisted key: 5 a minute, then 429 naming per-key.
	for i := range 5 {
		if got := check(envoyCheck("172.18.0.3", "localhost:10000", "x-api-key", "my-key")); !strings.HasPrefix(got, "200 ") {
			t.Fatalf("unlisted key, request %d: got %q, want 200", i+1, got)
		}
	}
	got = check(envoyCheck("172.18.0.3", "localhost:10000", "x-api-key", "my-key"))
	want := `429 X-RateLimit-Limit=5 X-RateLimit-Remaining=0 X-RateLimit-Reset=30 Retry-After=30 content-type=application/json ` +
		`{"code":"over_limit","domain":"edge_authz","limit":{"name":"per-key","requests_per_unit":5,"unit":"minute"},"retry_after_seconds":30}`
	if got != want {
		t.Errorf("6th unlisted-key request:\ngot  %s\nwant %s", got, want)
	}

	// 4. The free key has a launch-week override of 120 a minute until
	// 2030, then its tier's 60.
	got = check(envoyCheck("172.18.0.4", "localhost:10000", "x-api-key", "demo-free-key"))
	if !strings.Contains(got, "x-plan=free x-api-key-id=hobbyist") || !strings.Contains(got, "X-RateLimit-Limit=100 ") {
		t.Errorf("free key: got %q, want tier free, id hobbyist, the per-ip limit the tightest", got)
	}

	// 5. The tenant from a listed host.
	got = check(envoyCheck("172.18.0.5", "acme.localhost:10000"))
	if want := "200 X-RateLimit-Limit=100 X-RateLimit-Remaining=99 X-RateLimit-Reset=30 | x-tenant=acme x-plan=enterprise"; got != want {
		t.Errorf("acme host: got %q, want %q", got, want)
	}

	// 6. 100 requests a minute per client IP: the 101st gets a 429.
	for i := range 99 {
		if got := check(envoyCheck("172.18.0.1", "localhost:10000")); !strings.HasPrefix(got, "200 ") {
			t.Fatalf("per-ip request %d: got %q, want 200", i+2, got)
		}
	}
	got = check(envoyCheck("172.18.0.1", "localhost:10000", "x-forwarded-for", "9.9.9.9"))
	want = `429 X-RateLimit-Limit=100 X-RateLimit-Remaining=0 X-RateLimit-Reset=30 Retry-After=30 content-type=application/json ` +
		`{"code":"over_limit","domain":"edge_authz","limit":{"name":"per-ip","requests_per_unit":100,"unit":"minute"},"retry_after_seconds":30}`
	if got != want {
		t.Errorf("101st request of one IP:\ngot  %s\nwant %s", got, want)
	}

	// 7. A request that bypassed Envoy (no X-Forwarded-For) is refused.
	req := envoyCheck("172.18.0.9", "localhost:10000")
	delete(req.Attributes.Request.Http.Headers, "x-forwarded-for")
	if got := check(req); !strings.HasPrefix(got, "403 ") {
		t.Errorf("no X-Forwarded-For: got %q, want 403", got)
	}
}

// TestOverrideExpiry checks the free key's override: 120 a minute before
// 2030-01-01, its tier's 60 after, on the rules the config compiles (the
// same ResolveRequest that Check and ShouldRateLimit use).
func TestOverrideExpiry(t *testing.T) {
	cfg := loadConfig(t)
	d := descriptor.Descriptor{{Key: "api_key", Value: "hobbyist"}}
	r, ok := cfg.Rules.Match("edge_authz", d)
	if !ok {
		t.Fatalf("no rule for %v", d)
	}
	for _, tc := range []struct {
		at   time.Time
		want int64
	}{
		{at: now, want: 120},
		{at: time.Date(2029, 12, 31, 23, 59, 59, 0, time.UTC), want: 120},
		{at: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC), want: 60},
	} {
		if got := r.ResolveRequest(d, tc.at, nil, nil).Limit.Requests; got != tc.want {
			t.Errorf("at %v: got %d a minute, want %d", tc.at, got, tc.want)
		}
	}
}
