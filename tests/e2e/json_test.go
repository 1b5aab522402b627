package e2e

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// postJSON sends body to the admin listener's /json as curl -d would, with
// authorization when not empty, and returns the status, content type and
// body.
func postJSON(t *testing.T, p *Process, body, authorization string) (int, string, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+p.HTTPAddr+"/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded") // what curl -d sends
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST /json: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST /json: read body: %v", err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// TestJSONEndpoint: POST /json on the real binary answers 200 then 429 on
// the same counters as gRPC, 400 for a bad body; /healthcheck answers as
// envoyproxy/ratelimit's; the metrics count api="json".
func TestJSONEndpoint(t *testing.T) {
	p := startRLS(t)
	body := `{"domain": "edge", "descriptors": [{"entries": [{"key": "remote_address", "value": "10.7.7.7"}]}]}`
	// remote_address: 3 an hour; one spent over gRPC first.
	resp, err := rlsv3.NewRateLimitServiceClient(p.Dial(t)).ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{
		Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.7.7.7")}})
	if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Fatalf("gRPC: %v %v, want OK", resp.GetOverallCode(), err)
	}
	for i, want := range []struct {
		code      int
		overall   rlsv3.RateLimitResponse_Code
		remaining uint32
	}{{200, rlsv3.RateLimitResponse_OK, 1}, {200, rlsv3.RateLimitResponse_OK, 0}, {429, rlsv3.RateLimitResponse_OVER_LIMIT, 0}} {
		code, typ, got := postJSON(t, p, body, "")
		if code != want.code || typ != "application/json" {
			t.Fatalf("request %d: %d %s %q, want %d application/json", i, code, typ, got, want.code)
		}
		resp := new(rlsv3.RateLimitResponse)
		if err := protojson.Unmarshal([]byte(got), resp); err != nil {
			t.Fatalf("request %d: %q is not a RateLimitResponse: %v", i, got, err)
		}
		if resp.OverallCode != want.overall || resp.Statuses[0].LimitRemaining != want.remaining ||
			resp.Statuses[0].CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_HOUR {
			t.Errorf("request %d: %v, want %v with %d remaining of an hourly limit", i, resp, want.overall, want.remaining)
		}
	}
	code, typ, got := postJSON(t, p, `{"domain": "edge", "descriptors": [{"entries": [{"key": "remote_address", "valu": "x"}]}]}`, "")
	if code != 400 || !strings.HasPrefix(typ, "text/plain") || !strings.Contains(got, `unknown field "valu"`) {
		t.Errorf("bad body: %d %s %q, want 400 naming the unknown field", code, typ, got)
	}
	if code, _, got := postJSON(t, p, `{"domain": "edge", "descriptors": []}`, ""); code != 400 || !strings.Contains(got, "no descriptors") {
		t.Errorf("no descriptors: %d %q, want 400", code, got)
	}
	if code, _ := p.Get(t, "/json"); code != http.StatusMethodNotAllowed {
		t.Errorf("GET /json: %d, want 405", code)
	}
	if code, got := p.Get(t, "/healthcheck"); code != 200 || got != "OK" {
		t.Errorf("/healthcheck: %d %q, want 200 OK", code, got)
	}
	_, metrics := p.Get(t, "/metrics")
	for _, want := range []string{
		`extauthz_requests_total{api="json",code="ok",domain="edge"} 2`,
		`extauthz_requests_total{api="json",code="over_limit",domain="edge"} 1`,
		`extauthz_requests_total{api="json",code="invalid_argument",domain="_unknown"} 1`,
		`extauthz_requests_total{api="json",code="invalid_argument",domain="edge"} 1`,
		`extauthz_requests_total{api="ratelimit",code="ok",domain="edge"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestJSONEndpointAdminAuth: with an admin token, /json needs it (it counts
// hits), while the probes, /healthcheck included, stay open.
func TestJSONEndpointAdminAuth(t *testing.T) {
	const token = "e2e-json-token-0123456789"
	dir := t.TempDir()
	tokenFile := WriteFile(t, dir, "token", token+"\n")
	cfg := WriteFile(t, dir, "extauthz.yaml", serverConfig+"admin:\n  auth:\n    token_file: "+tokenFile+"\n")
	WriteFile(t, dir, "rules/edge.yaml", edgeRules)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	body := `{"domain": "edge", "descriptors": [{"entries": [{"key": "path", "value": "/login"}]}]}`
	if code, _, got := postJSON(t, p, body, ""); code != http.StatusUnauthorized || !strings.Contains(got, "Authorization: Bearer TOKEN") {
		t.Errorf("without the token: %d %q, want 401 saying how to authenticate", code, got)
	}
	if code, _, got := postJSON(t, p, body, "Bearer "+token); code != 200 {
		t.Errorf("with the token: %d %q, want 200", code, got)
	}
	if code, _, _ := postJSON(t, p, body, "Bearer "+token); code != 429 {
		t.Errorf("with the token, again: %d, want 429 (login: 1 an hour)", code)
	}
	if code, got := p.Get(t, "/healthcheck"); code != 200 || got != "OK" {
		t.Errorf("/healthcheck without a token: %d %q, want 200 OK", code, got)
	}
}

// TestCheckCommand runs `extauthz check` against the real binary.
func TestCheckCommand(t *testing.T) {
	p := startRLS(t)
	login := []string{"check", "--addr", p.GRPCAddr, "--domain", "edge", "--descriptor", "path=/login"}
	r := Run(t, extauthzBin, nil, login...)
	if r.Code != 0 || !strings.HasPrefix(r.Stdout, "OK  domain edge") || !strings.Contains(r.Stdout, "1 per hour (login)") {
		t.Errorf("first: exit %d, stdout %q, stderr %q; want 0 and the login limit", r.Code, r.Stdout, r.Stderr)
	}
	r = Run(t, extauthzBin, nil, login...)
	if r.Code != 3 || !strings.HasPrefix(r.Stdout, "OVER_LIMIT  domain edge") || !strings.Contains(r.Stdout, "Retry-After:") {
		t.Errorf("second: exit %d, stdout %q, stderr %q; want 3, OVER_LIMIT and a Retry-After header", r.Code, r.Stdout, r.Stderr)
	}
	r = Run(t, extauthzBin, nil, append(login, "--json")...)
	resp := new(rlsv3.RateLimitResponse)
	if err := protojson.Unmarshal([]byte(r.Stdout), resp); err != nil || r.Code != 3 || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("--json: exit %d, %v (%v), stdout %q; want 3 and an OVER_LIMIT RateLimitResponse", r.Code, resp.GetOverallCode(), err, r.Stdout)
	}
	// --hits 0 reads without counting: user allows 1 a minute.
	peek := []string{"check", "--addr", p.GRPCAddr, "--domain", "edge", "--descriptor", "user=zoe", "--hits", "0"}
	for range 2 {
		if r := Run(t, extauthzBin, nil, peek...); r.Code != 0 || !strings.Contains(r.Stdout, "nothing counted") {
			t.Errorf("--hits 0: exit %d, stdout %q; want 0", r.Code, r.Stdout)
		}
	}
	down := FreeAddr(t)
	r = Run(t, extauthzBin, nil, "check", "--addr", down, "--domain", "edge", "--descriptor", "path=/login", "--timeout", "2s")
	if r.Code != 1 || !strings.Contains(r.Stderr, "no decision from "+down) || !strings.Contains(r.Stderr, "check that extauthz serve runs there") {
		t.Errorf("bad address: exit %d, stderr %q; want 1 saying what to check", r.Code, r.Stderr)
	}
	// The admin listener is not the gRPC one.
	r = Run(t, extauthzBin, nil, "check", "--addr", p.HTTPAddr, "--domain", "edge", "--descriptor", "path=/login", "--timeout", "2s")
	if r.Code != 1 || !strings.Contains(r.Stderr, "grpc_addr") {
		t.Errorf("admin address: exit %d, stderr %q; want 1 naming grpc_addr", r.Code, r.Stderr)
	}
}

// TestCheckCommandTLS: check over a TLS gRPC listener with --ca-file; a
// plaintext check is told to add it.
func TestCheckCommandTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	cfg := WriteFile(t, dir, "extauthz.yaml", serverConfig+"tls:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\n")
	WriteFile(t, dir, "rules/edge.yaml", edgeRules)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	args := []string{"check", "--addr", p.GRPCAddr, "--domain", "edge", "--descriptor", "remote_address=10.8.8.8", "--timeout", "5s"}
	if r := Run(t, extauthzBin, nil, append(args, "--ca-file", certFile)...); r.Code != 0 || !strings.Contains(r.Stdout, "3 per hour") {
		t.Errorf("--ca-file: exit %d, stdout %q, stderr %q; want 0", r.Code, r.Stdout, r.Stderr)
	}
	if r := Run(t, extauthzBin, nil, args...); r.Code != 1 || !strings.Contains(r.Stderr, "--tls or --ca-file") {
		t.Errorf("plaintext: exit %d, stderr %q; want 1 suggesting --ca-file", r.Code, r.Stderr)
	}
}
