package xdsrules_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/xdsrules"
)

// pair is a certificate and its key, PEM.
type pair struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
	kpem []byte
}

// issue makes a certificate for cn signed by parent (self-signed CA when
// parent is nil).
func issue(t *testing.T, cn string, parent *pair, usage x509.ExtKeyUsage) *pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: []string{cn}}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.KeyUsage = true, tmpl.KeyUsage|x509.KeyUsageCertSign
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{usage}
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &pair{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		kpem: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestMutualTLS subscribes to a management server that requires a client
// certificate.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca := issue(t, "xds test CA", nil, 0)
	srvCert := issue(t, "xds.test", ca, x509.ExtKeyUsageServerAuth)
	cli := issue(t, "extauthz", ca, x509.ExtKeyUsageClientAuth)
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	serverPair, err := tls.X509KeyPair(srvCert.pem, srvCert.kpem)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	m := &mgmt{cache: cache}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverPair},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12})))
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(context.Background(), cache, nil))
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	m.set(t, "1", rule("edge", "a", rlsconfv3.RateLimitUnit_MINUTE, 12))

	in := newInstaller(t)
	c := client(t, xdsrules.Settings{Address: lis.Addr().String(), TLS: certs.ClientSettings{
		CAFile:     writeFile(t, dir, "ca.crt", ca.pem),
		CertFile:   writeFile(t, dir, "tls.crt", cli.pem),
		KeyFile:    writeFile(t, dir, "tls.key", cli.kpem),
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
	c2 := client(t, xdsrules.Settings{Address: lis.Addr().String(), TLS: certs.ClientSettings{CAFile: filepath.Join(dir, "ca.crt"), ServerName: "xds.test"}}, in2, nil)
	time.Sleep(300 * time.Millisecond)
	if c2.Ready() == nil || in2.limit("edge", "a", "") != -1 {
		t.Error("a client without a certificate got rules from a server that requires one")
	}
}
