package xdsrules_test

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/extauthz/extauthz/internal/testcerts"
	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/xdsrules"
)

// TestMutualTLS subscribes to a management server that requires a client
// certificate.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.MustCA(t, testcerts.Options{CommonName: "xds test CA"})
	srvCert := testcerts.MustIssue(t, ca, testcerts.Server("xds.test", "xds.test"))
	cli := testcerts.MustIssue(t, ca, testcerts.Client("extauthz"))
	files := testcerts.MustWriteFiles(t, dir, ca, cli)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	m := &mgmt{cache: cache}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{srvCert.TLS()},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: testcerts.Pool(ca), MinVersion: tls.VersionTLS12})))
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(context.Background(), cache, nil))
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	m.set(t, "1", rule("edge", "a", rlsconfv3.RateLimitUnit_MINUTE, 12))

	in := newInstaller(t)
	c := client(t, xdsrules.Settings{Address: lis.Addr().String(), TLS: certs.ClientSettings{
		CAFile:     files.CAFile,
		CertFile:   files.CertFile,
		KeyFile:    files.KeyFile,
		ServerName: "xds.test",
	}}, in, nil)
	deadline := time.Now().Add(10 * time.Second)
	for c.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no update over mutual TLS: %v", c.Ready())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := in.limit("edge", "a", ""); got != 12 {
		t.Errorf("over mutual TLS: limit %d, want 12", got)
	}

	// Without the client certificate the server refuses the handshake: no
	// rules ever arrive.
	in2 := newInstaller(t)
	c2 := client(t, xdsrules.Settings{Address: lis.Addr().String(), TLS: certs.ClientSettings{CAFile: files.CAFile, ServerName: "xds.test"}}, in2, nil)
	time.Sleep(300 * time.Millisecond)
	if c2.Ready() == nil || in2.limit("edge", "a", "") != -1 {
		t.Error("a client without a certificate got rules from a server that requires one")
	}
}
