package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/extauthz/extauthz/internal/testcerts"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// to dir and returns the pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	c := testcerts.MustCA(t, testcerts.Server("extauthz-e2e", "127.0.0.1"))
	certFile, keyFile, err := c.WritePair(dir, "tls")
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, testcerts.Pool(c)
}

// TestServeTLS serves the RateLimitService over TLS from the tls section.
func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	cfg := WriteFile(t, dir, "extauthz.yaml", serverConfig+"tls:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+"\n")
	WriteFile(t, dir, "rules/edge.yaml", edgeRules)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})

	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "edge",
		Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.2.2.2")}})
	if err != nil {
		t.Fatalf("over TLS: %v", err)
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("got %v, want OK", resp.GetOverallCode())
	}

	// A plaintext client is refused.
	if _, err := rlsv3.NewRateLimitServiceClient(p.Dial(t)).ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "edge",
		Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.2.2.2")}}); err == nil {
		t.Error("plaintext call over the TLS listener: got no error")
	}
	if _, body := p.Get(t, "/metrics"); !strings.Contains(body, "extauthz_tls_certificate_expiry_timestamp_seconds") {
		t.Errorf("/metrics lacks the certificate expiry")
	}
}
