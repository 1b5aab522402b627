package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// runExample builds the example at pkg, runs it with args on a free port
// until the test ends, and returns the address from its "listening on"
// line.
func runExample(t *testing.T, pkg string, args ...string) string {
	t.Helper()
	bin, err := BuildCommand(t.TempDir(), pkg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--listen", "127.0.0.1:0"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr syncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if err != nil || !ok {
		t.Fatalf("%s: first line %q (%v), want listening on ADDR; stderr:\n%s", pkg, line, err, stderr.String())
	}
	return addr
}

// TestExampleHTTPRemote: the built examples/go/http against the real
// binary, over real HTTP: the stricter POST /login limit refuses the 6th
// call with 429, headers and Retry-After; the handler reads the decision.
func TestExampleHTTPRemote(t *testing.T) {
	cfg := filepath.Join("..", "..", "examples", "go", "http", "config.yaml")
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	base := "http://" + runExample(t, "./examples/go/http", "--remote", p.GRPCAddr)
	post := func() (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", base+"/login", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
		return resp, b.String()
	}
	for i := range 5 {
		resp, body := post()
		if want := "logged in: rule login, " + strconv.Itoa(4-i) + " of 5 left\n"; resp.StatusCode != http.StatusOK || body != want {
			t.Fatalf("login %d: %d %q, want %q", i, resp.StatusCode, body, want)
		}
	}
	resp, body := post()
	ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != http.StatusTooManyRequests || body != "rate limit exceeded\n" || err != nil || ra < 1 || ra > 60 {
		t.Fatalf("6th login: %d %q Retry-After %q, want 429 and 1..60s", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	if resp.Header.Get("X-RateLimit-Limit") != "5" || resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("429 headers %v", resp.Header)
	}
	hello, body := get(t, base+"/hello")
	if hello.StatusCode != http.StatusOK || body != "hello: rule per-ip, 93 of 100 left\n" {
		t.Errorf("hello after 6 logins: %d %q", hello.StatusCode, body)
	}
}

// TestExampleGRPC: the built examples/go/grpc in process over real gRPC:
// the 6th Check of a minute is ResourceExhausted with a RetryInfo and
// rate-limit trailers.
func TestExampleGRPC(t *testing.T) {
	addr := runExample(t, "./examples/go/grpc", "--config", filepath.Join("..", "..", "examples", "go", "grpc", "config.yaml"))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 5 {
		if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			t.Fatalf("Check %d: %v", i, err)
		}
	}
	var tr metadata.MD
	_, err = client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("6th Check: %v, want ResourceExhausted", err)
	}
	var retry *errdetails.RetryInfo
	for _, d := range st.Details() {
		if r, ok := d.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 || retry.RetryDelay.AsDuration() > time.Minute {
		t.Errorf("RetryInfo %v, want a delay in (0, 1m]", retry)
	}
	if got := tr["x-ratelimit-limit"]; len(got) != 1 || got[0] != "5" {
		t.Errorf("trailers %v, want x-ratelimit-limit 5", tr)
	}
}
