package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// authzRules is the rule tree of the Check tests (domain "web"): 2 per
// minute per client IP, API keys tiered by their listing, tenants per
// route.
func authzRules(t testing.TB, ids *extract.Identities) *descriptor.Set {
	t.Helper()
	perMinute := func(name string, n int64) *descriptor.RateLimit {
		return &descriptor.RateLimit{Name: name, Unit: descriptor.UnitMinute, RequestsPerUnit: n}
	}
	keyRule := perMinute("per_key", 1)
	keyRule.Tiers = &descriptor.Tiers{
		Key:    "api_key",
		Limits: map[string]limiter.Limit{"pro": {Requests: 1000, Period: time.Minute}},
		Units:  map[string]descriptor.Unit{"pro": descriptor.UnitMinute},
	}
	s, err := descriptor.NewSet([]descriptor.Domain{{Name: "web", Descriptors: []descriptor.Node{
		{Key: "remote_address", RateLimit: perMinute("per_ip", 2)},
		{Key: "api_key", RateLimit: keyRule},
		{Key: "tenant", Descriptors: []descriptor.Node{{Key: "path", RateLimit: perMinute("per_tenant_path", 1)}}},
	}}}, descriptor.Options{Identities: ids})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	return s
}

// authzExtractor reads the client from one trusted hop of
// X-Forwarded-For, an API key from x-api-key, a tenant from x-tenant.
func authzExtractor(t testing.TB) (*extract.Extractor, *extract.Identities) {
	t.Helper()
	ids, err := extract.NewIdentities(extract.IdentitiesOptions{
		APIKeys: []extract.APIKeyListing{{Digest: extract.HashAPIKey("sk-pro"), Identity: extract.Identity{ID: "acme", Tier: "pro"}}},
	})
	if err != nil {
		t.Fatalf("NewIdentities: %v", err)
	}
	x, err := extract.New(extract.Settings{
		Domain:   "web",
		ClientIP: extract.ClientIPOptions{TrustedHops: 1},
		APIKey:   extract.APIKeyOptions{Sources: []extract.KeySource{{Header: "x-api-key"}}},
		Tenant:   extract.TenantOptions{Sources: []extract.TenantSource{{Header: "x-tenant", Trusted: true}}, ShareCounters: true}, // counters keyed as the RateLimitService path keys them
		Descriptors: []extract.DescriptorSpec{
			{Name: "per_ip", Entries: []extract.EntrySpec{{From: extract.FromClientIP, Missing: extract.MissingDeny, DenyStatus: 400}}},
			{Name: "per_key", Entries: []extract.EntrySpec{{From: extract.FromAPIKey}}},
			{Name: "per_tenant_path", Entries: []extract.EntrySpec{{From: extract.FromTenant}, {From: extract.FromPath}}},
		},
	}, ids)
	if err != nil {
		t.Fatalf("extract.New: %v", err)
	}
	return x, ids
}

// authzEnv is an Authz and a Server on bufconn over a recording memstore.
type authzEnv struct {
	srv    *Server
	authz  *Authz
	store  *recordingStore
	reg    *prometheus.Registry
	client authv3.AuthorizationClient
	rls    rlsv3.RateLimitServiceClient
}

func newAuthzEnv(t testing.TB, settings Settings, as AuthzSettings) *authzEnv {
	t.Helper()
	clock := &fakeClock{now: testNow}
	mem, err := memstore.New(memstore.Options{MaxKeys: 10_000, Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatalf("memstore.New: %v", err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	x, ids := authzExtractor(t)
	if as.Extractor == nil {
		as.Extractor = x
	}
	e := &authzEnv{store: &recordingStore{next: mem}, reg: prometheus.NewRegistry()}
	settings.Authz = &as
	snap, err := NewSnapshot(authzRules(t, ids), settings, nil)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	if e.srv, err = New(Options{Store: e.store, Metrics: mustMetrics(t, e.reg)}, snap); err != nil {
		t.Fatalf("New: %v", err)
	}
	if e.authz, err = NewAuthz(e.srv); err != nil {
		t.Fatalf("NewAuthz: %v", err)
	}
	lis := bufconn.Listen(1 << 20)
	g, _ := NewGRPCServer(GRPCOptions{})
	e.srv.Register(g)
	e.authz.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e.client = authv3.NewAuthorizationClient(conn)
	e.rls = rlsv3.NewRateLimitServiceClient(conn)
	return e
}

// checkRequest builds a CheckRequest from a peer, a path and header pairs.
func checkRequest(peer, path string, kv ...string) *authv3.CheckRequest {
	h := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: peer, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 50000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example", Path: path, Headers: h,
		}},
	}}
}

func (e *authzEnv) check(t testing.TB, req *authv3.CheckRequest) *authv3.CheckResponse {
	t.Helper()
	resp, err := e.client.Check(context.Background(), req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return resp
}

// fmtOptions renders header options as "k=v k=v", sorted.
func fmtOptions(hs []*corev3.HeaderValueOption) string {
	parts := make([]string, 0, len(hs))
	for _, h := range hs {
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD {
			parts = append(parts, "!append:"+h.GetHeader().GetKey())
		}
		parts = append(parts, h.GetHeader().GetKey()+"="+h.GetHeader().GetValue())
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// fmtCheck renders a CheckResponse compactly: "OK [response headers]
// upstream[...] remove[...]" or "DENIED 429 [headers] body".
func fmtCheck(resp *authv3.CheckResponse) string {
	if ok := resp.GetOkResponse(); ok != nil {
		return fmt.Sprintf("%s [%s] upstream[%s] remove%v", codes.Code(resp.GetStatus().GetCode()), fmtOptions(ok.GetResponseHeadersToAdd()),
			fmtOptions(ok.GetHeaders()), ok.GetHeadersToRemove())
	}
	if d := resp.GetDeniedResponse(); d != nil {
		return fmt.Sprintf("%s %d [%s] %s", codes.Code(resp.GetStatus().GetCode()), d.GetStatus().GetCode(), fmtOptions(d.GetHeaders()), d.GetBody())
	}
	return fmt.Sprintf("%s (no http response)", codes.Code(resp.GetStatus().GetCode()))
}

func TestCheck(t *testing.T) {
	const peer = "10.0.0.1" // Envoy; the client is the right-most X-Forwarded-For entry
	tests := []struct {
		name  string
		reqs  []*authv3.CheckRequest
		want  string // the answer to the last request
		takes int    // Store.Take calls over all requests
	}{
		{
			name: "allowed with headers and upstream identity",
			reqs: []*authv3.CheckRequest{checkRequest(peer, "/a?x=1", "x-forwarded-for", "6.6.6.6, 198.51.100.7", "x-api-key", "sk-pro", "x-tenant", "t1")},
			want: "OK [X-RateLimit-Limit=1 X-RateLimit-Remaining=0 X-RateLimit-Reset=60] " +
				"upstream[x-extauthz-api-key=acme x-extauthz-tenant=t1 x-extauthz-tier=pro] remove[]",
			takes: 1,
		},
		{
			name: "no identity removes client-sent upstream headers",
			reqs: []*authv3.CheckRequest{checkRequest(peer, "/a", "x-forwarded-for", "198.51.100.7", "x-extauthz-tenant", "forged")},
			want: "OK [X-RateLimit-Limit=2 X-RateLimit-Remaining=1 X-RateLimit-Reset=60] upstream[] " +
				"remove[x-extauthz-tenant x-extauthz-tier x-extauthz-api-key]",
			takes: 1,
		},
		{
			name: "third request of an IP is refused with 429",
			reqs: []*authv3.CheckRequest{
				checkRequest(peer, "/a", "x-forwarded-for", "198.51.100.7"),
				checkRequest(peer, "/b", "x-forwarded-for", "1.1.1.1, 198.51.100.7"),
				checkRequest(peer, "/c", "x-forwarded-for", "2.2.2.2, 198.51.100.7"),
			},
			want: `ResourceExhausted 429 [Retry-After=60 X-RateLimit-Limit=2 X-RateLimit-Remaining=0 X-RateLimit-Reset=60 content-type=application/json] ` +
				`{"code":"over_limit","domain":"web","limit":{"name":"per_ip","requests_per_unit":2,"unit":"minute"},"retry_after_seconds":60}`,
			takes: 3,
		},
		{
			name: "spoofed left-most entries do not share a counter",
			reqs: []*authv3.CheckRequest{
				checkRequest(peer, "/a", "x-forwarded-for", "198.51.100.7, 198.51.100.8"),
				checkRequest(peer, "/a", "x-forwarded-for", "198.51.100.7, 198.51.100.9"),
			},
			want:  "OK [X-RateLimit-Limit=2 X-RateLimit-Remaining=1 X-RateLimit-Reset=60] upstream[] remove[x-extauthz-tenant x-extauthz-tier x-extauthz-api-key]",
			takes: 2,
		},
		{
			name: "listed key's tier sets the limit",
			reqs: []*authv3.CheckRequest{
				checkRequest(peer, "/a", "x-forwarded-for", "198.51.100.1", "x-api-key", "sk-pro"),
				checkRequest(peer, "/a", "x-forwarded-for", "198.51.100.2", "x-api-key", "sk-pro"),
			},
			want: "OK [X-RateLimit-Limit=2 X-RateLimit-Remaining=1 X-RateLimit-Reset=60] " +
				"upstream[x-extauthz-api-key=acme x-extauthz-tier=pro] remove[x-extauthz-tenant]",
			takes: 2,
		},
		{
			name: "unlisted key gets the rule's own limit",
			reqs: []*authv3.CheckRequest{
				checkRequest(peer, "/a", "x-forwarded-for", "198.51.100.1", "x-api-key", "sk-other"),
				checkRequest(peer, "/a", "x-forwarded-for", "198.51.100.2", "x-api-key", "sk-other"),
			},
			want: `ResourceExhausted 429 [Retry-After=60 X-RateLimit-Limit=1 X-RateLimit-Remaining=0 X-RateLimit-Reset=60 content-type=application/json] ` +
				`{"code":"over_limit","domain":"web","limit":{"name":"per_key","requests_per_unit":1,"unit":"minute"},"retry_after_seconds":60}`,
			takes: 2,
		},
		{
			name: "tenants never share a counter",
			reqs: []*authv3.CheckRequest{
				checkRequest(peer, "/r", "x-forwarded-for", "198.51.100.1", "x-tenant", "t1"),
				checkRequest(peer, "/r", "x-forwarded-for", "198.51.100.2", "x-tenant", "t2"),
			},
			want: "OK [X-RateLimit-Limit=1 X-RateLimit-Remaining=0 X-RateLimit-Reset=60] " +
				"upstream[x-extauthz-tenant=t2] remove[x-extauthz-tier x-extauthz-api-key]",
			takes: 2,
		},
		{
			name:  "missing client address denies with the configured status",
			reqs:  []*authv3.CheckRequest{checkRequest(peer, "/a")},
			want:  `InvalidArgument 400 [content-type=application/json] {"code":"missing_source","reason":"descriptor \"per_ip\": no client_ip for entry \"remote_address\""}`,
			takes: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newAuthzEnv(t, Settings{Headers: HeaderSettings{Enabled: true}}, AuthzSettings{
				TenantHeader: "x-extauthz-tenant", TierHeader: "x-extauthz-tier", APIKeyIDHeader: "x-extauthz-api-key",
			})
			var resp *authv3.CheckResponse
			for _, r := range tc.reqs {
				resp = e.check(t, r)
			}
			if got := fmtCheck(resp); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if got := len(e.store.takes()); got != tc.takes {
				t.Errorf("got %d Store.Take calls, want %d (one per Check that counts)", got, tc.takes)
			}
		})
	}
}

func TestCheckRetryAfterWithoutHeaders(t *testing.T) {
	e := newAuthzEnv(t, Settings{}, AuthzSettings{})
	for range 2 {
		e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.7"))
	}
	resp := e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.7"))
	want := `ResourceExhausted 429 [Retry-After=60 content-type=application/json] ` +
		`{"code":"over_limit","domain":"web","limit":{"name":"per_ip","requests_per_unit":2,"unit":"minute"},"retry_after_seconds":60}`
	if got := fmtCheck(resp); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(resp.GetDeniedResponse().GetBody()), &body); err != nil {
		t.Errorf("body is not JSON: %v", err)
	}
}

func TestCheckDraftHeaders(t *testing.T) {
	e := newAuthzEnv(t, Settings{Headers: HeaderSettings{Enabled: true, Draft: true}}, AuthzSettings{})
	resp := e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.7"))
	got := fmtOptions(resp.GetOkResponse().GetResponseHeadersToAdd())
	for _, w := range []string{`RateLimit-Policy="per_ip";q=2;w=60`, `RateLimit="per_ip";r=1;t=60`} {
		if !strings.Contains(got, w) {
			t.Errorf("got headers %q, want them to contain %q", got, w)
		}
	}
}

func TestCheckHeaderMap(t *testing.T) {
	// encode_raw_headers: true sends header_map (raw values) instead of
	// headers; the repeated X-Forwarded-For is merged as Envoy merges it.
	e := newAuthzEnv(t, Settings{Headers: HeaderSettings{Enabled: true}}, AuthzSettings{TenantHeader: "x-t"})
	req := checkRequest("10.0.0.1", "/p")
	req.Attributes.Request.Http.Headers = nil
	req.Attributes.Request.Http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: "x-forwarded-for", RawValue: []byte("6.6.6.6")},
		{Key: "user-agent", RawValue: []byte("curl")},
		{Key: "X-Tenant", RawValue: []byte("t9")},
		{Key: "x-forwarded-for", RawValue: []byte("198.51.100.4")},
	}}
	resp := e.check(t, req)
	if got, want := fmtCheck(resp), "OK [X-RateLimit-Limit=1 X-RateLimit-Remaining=0 X-RateLimit-Reset=60] upstream[x-t=t9] remove[]"; got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	takes := e.store.takes()
	if len(takes) != 1 || len(takes[0].reqs) != 2 {
		t.Fatalf("got takes %+v, want one Take of 2 counters (per_ip, per_tenant_path)", takes)
	}
	ipKey := string(descriptor.AppendKey(nil, mustRule(t, e.srv, "web", descriptor.Descriptor{{Key: "remote_address", Value: "198.51.100.4"}}),
		descriptor.Descriptor{{Key: "remote_address", Value: "198.51.100.4"}}))
	if takes[0].reqs[0].Key != ipKey {
		t.Errorf("got per-ip key %q, want the key of 198.51.100.4 %q", takes[0].reqs[0].Key, ipKey)
	}
}

func mustRule(t *testing.T, s *Server, domain string, d descriptor.Descriptor) *descriptor.Rule {
	t.Helper()
	r, ok := s.Snapshot().Rules().Match(domain, d)
	if !ok {
		t.Fatalf("no rule for %v", d)
	}
	return r
}

func TestCheckStoreFailure(t *testing.T) {
	tests := []struct {
		name    string
		policy  chain.FailurePolicy
		wantErr codes.Code
		want    string
	}{
		{name: "envoy", policy: chain.FailurePolicy{Default: chain.FailEnvoy}, wantErr: codes.Unavailable},
		{name: "open", policy: chain.FailurePolicy{Default: chain.FailOpen},
			want: "OK [X-RateLimit-Limit=2 X-RateLimit-Remaining=2 X-RateLimit-Reset=0] upstream[] remove[]"},
		{name: "closed", policy: chain.FailurePolicy{Default: chain.FailClosed},
			want: `ResourceExhausted 429 [Retry-After=1 X-RateLimit-Limit=2 X-RateLimit-Remaining=0 X-RateLimit-Reset=1 content-type=application/json] ` +
				`{"code":"over_limit","domain":"web","limit":{"name":"per_ip","requests_per_unit":2,"unit":"minute"},"retry_after_seconds":1}`},
		{name: "per-domain override", policy: chain.FailurePolicy{Default: chain.FailClosed, Domains: map[string]chain.FailureMode{"web": chain.FailOpen}},
			want: "OK [X-RateLimit-Limit=2 X-RateLimit-Remaining=2 X-RateLimit-Reset=0] upstream[] remove[]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newAuthzEnv(t, Settings{Failure: tc.policy, Headers: HeaderSettings{Enabled: true}}, AuthzSettings{})
			e.store.fail(errBackend)
			resp, err := e.client.Check(context.Background(), checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.7"))
			if got := status.Code(err); got != tc.wantErr {
				t.Fatalf("got error code %v (%v), want %v", got, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got := fmtCheck(resp); got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestCheckDynamicMetadata(t *testing.T) {
	e := newAuthzEnv(t, Settings{}, AuthzSettings{DynamicMetadata: true})
	resp := e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.7", "x-api-key", "sk-pro", "x-tenant", "t1"))
	got := resp.GetDynamicMetadata().AsMap()
	want := map[string]any{"tenant": "t1", "tier": "pro", "api_key_id": "acme"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got metadata %v, want %v", got, want)
	}
	resp = e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.8"))
	if md := resp.GetDynamicMetadata(); md != nil {
		t.Errorf("got metadata %v for a request without identity, want none", md)
	}
}

func TestCheckMetrics(t *testing.T) {
	e := newAuthzEnv(t, Settings{}, AuthzSettings{})
	for range 3 {
		e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.7"))
	}
	e.check(t, checkRequest("10.0.0.1", "/")) // no client: denied by the extractor
	want := `
# HELP extauthz_requests_total Requests answered, by API, domain and code (ok, over_limit or the gRPC error).
# TYPE extauthz_requests_total counter
extauthz_requests_total{api="authz",code="invalid_argument",domain="web"} 1
extauthz_requests_total{api="authz",code="ok",domain="web"} 2
extauthz_requests_total{api="authz",code="over_limit",domain="web"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "extauthz_requests_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.ToFloat64(e.srv.metrics.decisions.WithLabelValues("web", "web.remote_address", "over_limit")); got != 1 {
		t.Errorf("got %v over_limit decisions of per_ip, want 1", got)
	}
}

func TestCheckSharesCountersWithShouldRateLimit(t *testing.T) {
	e := newAuthzEnv(t, Settings{}, AuthzSettings{})
	e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.7"))
	resp, err := e.rls.ShouldRateLimit(context.Background(), request("web", desc("remote_address", "198.51.100.7")))
	if err != nil {
		t.Fatal(err)
	}
	if got := resp.GetStatuses()[0].GetLimitRemaining(); got != 0 {
		t.Errorf("got remaining %d after one Check and one ShouldRateLimit of the same IP, want 0 (one counter)", got)
	}
}

// TestCheckConcurrent runs Checks of distinct clients in parallel (run it
// with -race): pooled scratch must never leak between calls, so each
// client's second request sees exactly its own first one.
func TestCheckConcurrent(t *testing.T) {
	e := newAuthzEnv(t, Settings{Headers: HeaderSettings{Enabled: true}}, AuthzSettings{TenantHeader: "x-t"})
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for w := range 8 {
		wg.Go(func() {
			for i := range 25 {
				ip := fmt.Sprintf("198.51.%d.%d", w, i)
				tenant := fmt.Sprintf("t%d-%d", w, i)
				for n := range 2 {
					resp, err := e.authz.Check(context.Background(), checkRequest("10.0.0.1", "/", "x-forwarded-for", ip, "x-tenant", tenant))
					if err != nil {
						errs <- err.Error()
						return
					}
					ok := resp.GetOkResponse()
					want := fmt.Sprintf("X-RateLimit-Limit=1 X-RateLimit-Remaining=0 X-RateLimit-Reset=60 | x-t=%s", tenant)
					if n == 0 && (ok == nil || fmtOptions(ok.GetResponseHeadersToAdd())+" | "+fmtOptions(ok.GetHeaders()) != want) {
						errs <- fmt.Sprintf("%s first request: got %s, want %s", ip, fmtCheck(resp), want)
					}
					if n == 1 && resp.GetDeniedResponse() == nil {
						errs <- fmt.Sprintf("%s second request: got %s, want 429 (per_tenant_path 1/min)", ip, fmtCheck(resp))
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestNewAuthzErrors(t *testing.T) {
	e := newAuthzEnv(t, Settings{}, AuthzSettings{})
	if _, err := NewAuthz(nil); err == nil {
		t.Error("NewAuthz(nil server): got no error")
	}
	x, ids := authzExtractor(t)
	rules := authzRules(t, ids)
	if _, err := NewSnapshot(rules, Settings{Authz: &AuthzSettings{}}, nil); err == nil {
		t.Error("NewSnapshot with authz settings without extractor: got no error")
	}
	if _, err := NewSnapshot(rules, Settings{Authz: &AuthzSettings{Extractor: x, TenantHeader: "bad header"}}, nil); err == nil {
		t.Error("NewSnapshot with an invalid authz header name: got no error")
	}
	plain, err := NewSnapshot(rules, Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Store: e.store}, plain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewAuthz(srv); err == nil {
		t.Error("NewAuthz over a snapshot without authz settings: got no error")
	}
	// A snapshot without authz settings swapped in: Check refuses, never
	// decides with no extractor.
	e.srv.Swap(plain)
	if _, err := e.authz.Check(context.Background(), checkRequest("10.0.0.1", "/")); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Check over a snapshot without authz settings: got %v, want FailedPrecondition", err)
	}
}

// BenchmarkCheck measures the Check handler in process (no gRPC), on the
// rules and memstore of BenchmarkShouldRateLimit, with the same descriptors
// (1desc: the client IP from X-Forwarded-For; 3desc: and the path and a
// user header), so that the two are comparable.
func BenchmarkCheck(b *testing.B) {
	entries := func(from extract.Source, key, header string) extract.DescriptorSpec {
		return extract.DescriptorSpec{Name: key, Entries: []extract.EntrySpec{{From: from, Key: key, Header: header}}}
	}
	oneDesc := []extract.DescriptorSpec{entries(extract.FromClientIP, "remote_address", "")}
	threeDesc := append(oneDesc[:1:1], entries(extract.FromPath, "path", ""), entries(extract.FromHeader, "user", "x-user"))
	cases := []struct {
		name     string
		settings Settings
		descs    []extract.DescriptorSpec
	}{
		{name: "1desc", descs: oneDesc},
		{name: "1desc_headers", settings: Settings{Headers: HeaderSettings{Enabled: true}}, descs: oneDesc},
		{name: "3desc", descs: threeDesc},
	}
	reqs := make([]*authv3.CheckRequest, 1024)
	for i := range reqs {
		reqs[i] = checkRequest("10.255.0.1", fmt.Sprintf("/api/v%d?page=%d", i%7, i),
			"x-forwarded-for", fmt.Sprintf("203.0.113.9, 10.0.%d.%d", i/256, i%256), "x-user", fmt.Sprintf("user-%d", i),
			"user-agent", "bench", "accept", "*/*")
	}
	ctx := context.Background()
	for _, tc := range cases {
		x, err := extract.New(extract.Settings{
			Domain: "edge", ClientIP: extract.ClientIPOptions{TrustedHops: 1}, Descriptors: tc.descs,
		}, nil)
		if err != nil {
			b.Fatal(err)
		}
		st := tc.settings
		st.Authz = &AuthzSettings{Extractor: x}
		a, err := NewAuthz(benchServer(b, st))
		if err != nil {
			b.Fatal(err)
		}
		// Check the inputs do what the case says: allowed, every descriptor
		// counted.
		resp, err := a.Check(ctx, reqs[0])
		if err != nil || resp.GetOkResponse() == nil {
			b.Fatalf("%s: got %s, %v; want OK", tc.name, fmtCheck(resp), err)
		}
		var ext extract.Extraction
		var r authzScratch
		readCheckRequest(reqs[0], x, &r)
		x.Extract(&r.req, time.Now(), &ext)
		if len(ext.Descriptors) != len(tc.descs) {
			b.Fatalf("%s: got %d descriptors, want %d", tc.name, len(ext.Descriptors), len(tc.descs))
		}
		benchCalls(b, tc.name, reqs, func(r *authv3.CheckRequest) error {
			_, err := a.Check(ctx, r)
			return err
		})
	}
}

// TestCheckTenantNamespace checks tenant isolation end to end through
// Check: with namespacing (the default; authz.tenant.share_counters:
// false) two tenants sending the same client IP and API key count on
// counters of their own, with share_counters they share them.
func TestCheckTenantNamespace(t *testing.T) {
	tests := []struct {
		name      string
		namespace bool
		apiKey    string   // sent with every Check ("" for none)
		tenants   []string // one Check per entry, all from one client IP ("" for no tenant)
		want      []string // per Check: OK or 429
	}{
		{name: "namespaced: per-IP counters are per tenant", namespace: true,
			tenants: []string{"t1", "t1", "t1", "t2"}, want: []string{"OK", "OK", "429", "OK"}},
		{name: "namespaced: per-key counters are per tenant", namespace: true, apiKey: "sk-shared",
			tenants: []string{"t1", "t1", "t2"}, want: []string{"OK", "429", "OK"}},
		{name: "namespaced: no tenant is not a tenant's counter", namespace: true,
			tenants: []string{"t1", "t1", ""}, want: []string{"OK", "OK", "OK"}},
		{name: "share_counters: per-IP counters are shared", namespace: false,
			tenants: []string{"t1", "t1", "t2"}, want: []string{"OK", "OK", "429"}},
		{name: "share_counters: per-key counters are shared", namespace: false, apiKey: "sk-shared",
			tenants: []string{"t1", "t2"}, want: []string{"OK", "429"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := extract.New(extract.Settings{
				Domain:   "web",
				ClientIP: extract.ClientIPOptions{TrustedHops: 1},
				APIKey:   extract.APIKeyOptions{Sources: []extract.KeySource{{Header: "x-api-key"}}},
				Tenant:   extract.TenantOptions{Sources: []extract.TenantSource{{Header: "x-tenant", Trusted: true}}, ShareCounters: !tc.namespace},
				Descriptors: []extract.DescriptorSpec{
					{Name: "per_ip", Entries: []extract.EntrySpec{{From: extract.FromClientIP}}},
					{Name: "per_key", Entries: []extract.EntrySpec{{From: extract.FromAPIKey}}},
				},
			}, nil)
			if err != nil {
				t.Fatalf("extract.New: %v", err)
			}
			e := newAuthzEnv(t, Settings{}, AuthzSettings{Extractor: x})
			for i, tenant := range tc.tenants {
				kv := []string{"x-forwarded-for", "198.51.100.7"}
				if tc.apiKey != "" {
					kv = append(kv, "x-api-key", tc.apiKey)
				}
				if tenant != "" {
					kv = append(kv, "x-tenant", tenant)
				}
				got := "OK"
				if resp := e.check(t, checkRequest("10.0.0.1", "/", kv...)); resp.GetOkResponse() == nil {
					got = fmt.Sprint(resp.GetDeniedResponse().GetStatus().GetCode())
					if got == "TooManyRequests" {
						got = "429"
					}
				}
				if got != tc.want[i] {
					t.Errorf("Check %d (tenant %q): got %s, want %s", i+1, tenant, got, tc.want[i])
				}
			}

			// The counter key is the tenant's (AppendTenantKey) exactly
			// when namespacing is on.
			d := descriptor.Descriptor{{Key: "remote_address", Value: "198.51.100.7"}}
			ns := ""
			if tc.namespace {
				ns = tc.tenants[0]
			}
			want := string(descriptor.AppendTenantKey(nil, ns, mustRule(t, e.srv, "web", d), d))
			if got := e.store.takes()[0].reqs[0].Key; got != want {
				t.Errorf("got first per-IP key %q, want %q", got, want)
			}
		})
	}
}

// TestCheckRequestIdentityOverride checks that Check resolves limits with
// the request's own listed API key (Rule.ResolveRequest): its override of
// the per-IP rule applies although the per-IP descriptor does not carry
// the key.
func TestCheckRequestIdentityOverride(t *testing.T) {
	ids, err := extract.NewIdentities(extract.IdentitiesOptions{
		APIKeys: []extract.APIKeyListing{{Digest: extract.HashAPIKey("sk-vip"), Identity: extract.Identity{
			ID:        "vip",
			Overrides: []descriptor.LimitOverride{{Rule: "per_ip", Limit: limiter.Limit{Requests: 5, Period: time.Minute}, Unit: descriptor.UnitMinute}},
		}}},
	})
	if err != nil {
		t.Fatalf("NewIdentities: %v", err)
	}
	x, err := extract.New(extract.Settings{
		Domain:      "web",
		ClientIP:    extract.ClientIPOptions{TrustedHops: 1},
		APIKey:      extract.APIKeyOptions{Sources: []extract.KeySource{{Header: "x-api-key"}}},
		Descriptors: []extract.DescriptorSpec{{Name: "per_ip", Entries: []extract.EntrySpec{{From: extract.FromClientIP}}}},
	}, ids)
	if err != nil {
		t.Fatalf("extract.New: %v", err)
	}
	e := newAuthzEnv(t, Settings{Headers: HeaderSettings{Enabled: true}}, AuthzSettings{Extractor: x})
	snap, err := NewSnapshot(authzRules(t, ids), Settings{Headers: HeaderSettings{Enabled: true}, Authz: &AuthzSettings{Extractor: x}}, nil)
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	e.srv.Swap(snap)

	tests := []struct {
		name, ip, key string
		want          string // the answer to the third Check
	}{
		{name: "listed key: its override of per_ip (5/min)", ip: "198.51.100.1", key: "sk-vip",
			want: "OK [X-RateLimit-Limit=5 X-RateLimit-Remaining=2 X-RateLimit-Reset=60] upstream[] remove[]"},
		{name: "unlisted key: the rule's own limit (2/min)", ip: "198.51.100.2", key: "sk-other",
			want: "ResourceExhausted 429"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var resp *authv3.CheckResponse
			for range 3 {
				resp = e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", tc.ip, "x-api-key", tc.key))
			}
			if got := fmtCheck(resp); !strings.HasPrefix(got, tc.want) {
				t.Errorf("got  %s\nwant %s...", got, tc.want)
			}
		})
	}
}

// TestAuthzReadsOneSnapshot (issue 16, finding 10): snapshots whose
// extractor and rule name the client IP entry with the same key, a
// different key in each, swapped while Checks run: a Check that paired one
// snapshot's extractor with the other's rules would match no rule and be
// admitted without a limit header.
func TestAuthzReadsOneSnapshot(t *testing.T) {
	snaps := make([]*Snapshot, 2)
	for i, key := range []string{"client_a", "client_b"} {
		x, err := extract.New(extract.Settings{
			Domain: "web", ClientIP: extract.ClientIPOptions{TrustedHops: 1},
			Descriptors: []extract.DescriptorSpec{{Name: "per_ip", Entries: []extract.EntrySpec{{From: extract.FromClientIP, Key: key}}}},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rules, err := descriptor.NewSet([]descriptor.Domain{{Name: "web", Descriptors: []descriptor.Node{
			{Key: key, RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: 1 << 31}},
		}}}, descriptor.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if snaps[i], err = NewSnapshot(rules, Settings{Headers: HeaderSettings{Enabled: true}, Authz: &AuthzSettings{Extractor: x}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	mem, err := memstore.New(memstore.Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	srv, err := New(Options{Store: mem}, snaps[0])
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthz(srv)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var checks, unlimited atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			req := checkRequest("10.0.0.1", "/", "x-forwarded-for", fmt.Sprintf("198.51.100.%d", w+1))
			for !stop.Load() {
				resp, err := a.Check(context.Background(), req)
				if err != nil {
					t.Errorf("Check: %v", err)
					return
				}
				checks.Add(1)
				if !strings.Contains(fmtCheck(resp), "X-RateLimit-Limit=") {
					unlimited.Add(1)
				}
			}
		})
	}
	for i := 0; i < 200_000 && (i < 20_000 || checks.Load() < 5_000); i++ {
		srv.Swap(snaps[(i+1)%2])
	}
	stop.Store(true)
	wg.Wait()
	if n := unlimited.Load(); n > 0 {
		t.Errorf("%d of %d Checks matched no rule: one snapshot's extractor paired with the other's rules", n, checks.Load())
	}
	if checks.Load() == 0 {
		t.Fatal("no Check ran during the swaps")
	}
}
