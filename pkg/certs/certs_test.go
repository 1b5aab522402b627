package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// issuer is a certificate with its key, able to sign others.
type issuer struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	der  []byte
}

var serial atomic.Int64

// newCert makes a certificate for cn, signed by parent (self-signed when
// parent is nil). ca makes it a CA; server and client set the key usages.
func newCert(t *testing.T, cn string, parent *issuer, ca, server, client bool) *issuer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial.Add(1)),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  ca,
		KeyUsage:              x509.KeyUsageDigitalSignature,
	}
	if ca {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	if client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	signer, signerKey := tmpl, key
	if parent != nil {
		signer, signerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &issuer{cert: cert, key: key, der: der}
}

func (i *issuer) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.der})
}

func (i *issuer) keyPEM(t *testing.T) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(i.key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// tlsPair is the certificate as a client certificate for tls.Config.
func (i *issuer) tlsPair() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{i.der}, PrivateKey: i.key, Leaf: i.cert}
}

func pool(cas ...*issuer) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c.cert)
	}
	return p
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// pki is a CA with a server certificate, written to files in a directory.
type pki struct {
	dir                       string
	ca                        *issuer
	server                    *issuer
	certFile, keyFile, caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.ca = newCert(t, "test CA", nil, true, false, false)
	p.server = newCert(t, "server", p.ca, false, true, false)
	p.certFile = filepath.Join(p.dir, "tls.crt")
	p.keyFile = filepath.Join(p.dir, "tls.key")
	p.caFile = filepath.Join(p.dir, "ca.crt")
	write(t, p.certFile, p.server.certPEM())
	write(t, p.keyFile, p.server.keyPEM(t))
	write(t, p.caFile, p.ca.certPEM())
	return p
}

// serve runs a TLS listener with cfg that completes handshakes; it returns
// the address and a channel of the server-side handshake results.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	results := make(chan error, 16)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			err = c.(*tls.Conn).Handshake()
			if err == nil {
				_, err = c.Write([]byte("ok"))
			}
			results <- err
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	return ln.Addr().String(), results
}

// dial handshakes with addr and reads the server's greeting; it returns
// the server certificate.
func dial(addr string, cfg *tls.Config) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2)
	// With TLS 1.3 a refused client certificate shows on the first read.
	if _, err := io.ReadFull(c, buf); err != nil {
		return nil, err
	}
	return c.ConnectionState().PeerCertificates[0], nil
}

func TestHandshake(t *testing.T) {
	p := newPKI(t)
	r, err := New(Options{CertFile: p.certFile, KeyFile: p.keyFile})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serve(t, r.TLSConfig())
	got, err := dial(addr, &tls.Config{RootCAs: pool(p.ca), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := <-results; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if got.SerialNumber.Cmp(p.server.cert.SerialNumber) != 0 {
		t.Errorf("served serial %v, want %v", got.SerialNumber, p.server.cert.SerialNumber)
	}
	info := r.Info()
	if info.Subject != "CN=server" || !info.NotAfter.Equal(p.server.cert.NotAfter) || info.ClientCAs != 0 {
		t.Errorf("Info: got %+v, want CN=server, NotAfter %v, no client CAs", info, p.server.cert.NotAfter)
	}
	// Without client CAs, a client certificate is not needed.
	if _, err := dial(addr, &tls.Config{RootCAs: pool(p.ca), ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12}); err != nil {
		t.Errorf("TLS 1.2 handshake by IP: %v", err)
	}
}

func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	r, err := New(Options{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.Info().ClientCAs; n != 1 {
		t.Errorf("Info().ClientCAs = %d, want 1", n)
	}
	addr, results := serve(t, r.TLSConfig())
	good := newCert(t, "envoy", p.ca, false, false, true)
	otherCA := newCert(t, "other CA", nil, true, false, false)
	stranger := newCert(t, "stranger", otherCA, false, false, true)

	tests := []struct {
		name       string
		cert       *issuer // sent even if the server does not ask for its CA
		maxVersion uint16
		wantErr    string // server-side handshake error; "" for success
	}{
		{name: "trusted client", cert: good},
		{name: "trusted client TLS 1.2", cert: good, maxVersion: tls.VersionTLS12},
		{name: "no certificate", wantErr: "didn't provide a certificate"},
		{name: "no certificate TLS 1.2", maxVersion: tls.VersionTLS12, wantErr: "didn't provide a certificate"},
		{name: "certificate of another CA", cert: stranger, wantErr: "unknown authority"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: pool(p.ca), ServerName: "localhost", MaxVersion: tc.maxVersion}
			if tc.cert != nil {
				pair := tc.cert.tlsPair()
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
			}
			_, clientErr := dial(addr, cfg)
			serverErr := <-results
			if tc.wantErr == "" {
				if clientErr != nil || serverErr != nil {
					t.Fatalf("handshake: client %v, server %v; want success", clientErr, serverErr)
				}
				return
			}
			if clientErr == nil {
				t.Error("client: got success, want the connection refused")
			}
			if serverErr == nil || !strings.Contains(serverErr.Error(), tc.wantErr) {
				t.Errorf("server: got %v, want an error containing %q", serverErr, tc.wantErr)
			}
		})
	}
}

func TestMinVersion(t *testing.T) {
	p := newPKI(t)
	r, err := New(Options{CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: tls.VersionTLS13})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serve(t, r.TLSConfig())
	if _, err := dial(addr, &tls.Config{RootCAs: pool(p.ca), ServerName: "localhost", MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS 1.2 client: got success, want refusal")
	}
	if err := <-results; err == nil || !strings.Contains(err.Error(), "unsupported versions") {
		t.Errorf("server: got %v, want an unsupported version error", err)
	}
	if _, err := dial(addr, &tls.Config{RootCAs: pool(p.ca), ServerName: "localhost"}); err != nil {
		t.Errorf("TLS 1.3 client: %v", err)
	}
	<-results
}

// fakeClock is a settable time.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestRotation(t *testing.T) {
	p := newPKI(t)
	clk := &fakeClock{}
	clk.ns.Store(time.Now().UnixNano())
	var reloads, errs atomic.Int32
	r, err := New(Options{CertFile: p.certFile, KeyFile: p.keyFile, Now: clk.Now,
		OnReload: func(Info) { reloads.Add(1) }, OnError: func(error) { errs.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serve(t, r.TLSConfig())
	client := &tls.Config{RootCAs: pool(p.ca), ServerName: "localhost"}
	served := func() *big.Int {
		t.Helper()
		c, err := dial(addr, client)
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		if err := <-results; err != nil {
			t.Fatalf("server handshake: %v", err)
		}
		return c.SerialNumber
	}
	if got := served(); got.Cmp(p.server.cert.SerialNumber) != 0 {
		t.Fatalf("serial %v, want %v", got, p.server.cert.SerialNumber)
	}

	// Replace the files (as cert-manager does, key and certificate).
	next := newCert(t, "server", p.ca, false, true, false)
	write(t, p.certFile, next.certPEM())
	write(t, p.keyFile, next.keyPEM(t))
	// Within CheckEvery the files are not looked at.
	if got := served(); got.Cmp(p.server.cert.SerialNumber) != 0 {
		t.Errorf("serial before the check interval: %v, want the old %v", got, p.server.cert.SerialNumber)
	}
	clk.advance(DefaultCheckEvery)
	if got := served(); got.Cmp(next.cert.SerialNumber) != 0 {
		t.Errorf("serial after rotation: %v, want the new %v", got, next.cert.SerialNumber)
	}
	if reloads.Load() != 1 || errs.Load() != 0 {
		t.Errorf("callbacks: %d reloads, %d errors; want 1, 0", reloads.Load(), errs.Load())
	}

	// Half a rotation: a new certificate, the old key. The old pair keeps
	// serving, and the error is reported once.
	third := newCert(t, "server", p.ca, false, true, false)
	write(t, p.certFile, third.certPEM())
	for range 3 {
		clk.advance(DefaultCheckEvery)
		if got := served(); got.Cmp(next.cert.SerialNumber) != 0 {
			t.Errorf("serial with a mismatched key: %v, want the previous %v", got, next.cert.SerialNumber)
		}
	}
	if errs.Load() != 1 {
		t.Errorf("errors reported for one broken set: %d, want 1", errs.Load())
	}
	write(t, p.keyFile, third.keyPEM(t))
	clk.advance(DefaultCheckEvery)
	if got := served(); got.Cmp(third.cert.SerialNumber) != 0 {
		t.Errorf("serial once the key follows: %v, want %v", got, third.cert.SerialNumber)
	}
	if reloads.Load() != 2 {
		t.Errorf("reloads: %d, want 2", reloads.Load())
	}
}

// TestKubernetesSecretRotation rotates the files the way the kubelet
// updates a Secret volume: the visible files are symlinks through a
// "..data" symlink that is swapped to a new directory.
func TestKubernetesSecretRotation(t *testing.T) {
	dir := t.TempDir()
	ca := newCert(t, "CA", nil, true, false, false)
	version := func(n int, c *issuer) {
		ts := filepath.Join(dir, "..v"+string(rune('0'+n)))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(ts, "tls.crt"), c.certPEM())
		write(t, filepath.Join(ts, "tls.key"), c.keyPEM(t))
		write(t, filepath.Join(ts, "ca.crt"), ca.certPEM())
		if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	first := newCert(t, "server", ca, false, true, false)
	version(1, first)
	for _, f := range []string{"tls.crt", "tls.key", "ca.crt"} {
		if err := os.Symlink(filepath.Join("..data", f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := New(Options{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")})
	if err != nil {
		t.Fatal(err)
	}
	second := newCert(t, "server-2", ca, false, true, false)
	version(2, second)
	if err := os.RemoveAll(filepath.Join(dir, "..v1")); err != nil {
		t.Fatal(err)
	}
	if err := r.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if got := r.Info().Subject; got != "CN=server-2" {
		t.Errorf("subject after the Secret update: %q, want CN=server-2", got)
	}
}

func TestGRPC(t *testing.T) {
	p := newPKI(t)
	r, err := New(Options{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(credentials.NewTLS(r.TLSConfig())))
	healthpb.RegisterHealthServer(g, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)

	client := newCert(t, "envoy", p.ca, false, false, true)
	check := func(cfg *tls.Config) error {
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	if err := check(&tls.Config{RootCAs: pool(p.ca), ServerName: "localhost", Certificates: []tls.Certificate{client.tlsPair()}}); err != nil {
		t.Errorf("health check over mTLS: %v", err)
	}
	if err := check(&tls.Config{RootCAs: pool(p.ca), ServerName: "localhost"}); err == nil {
		t.Error("health check without a client certificate: got success, want failure")
	}
}

func TestNewErrors(t *testing.T) {
	p := newPKI(t)
	other := newCert(t, "other", p.ca, false, true, false)
	otherKey := filepath.Join(p.dir, "other.key")
	write(t, otherKey, other.keyPEM(t))
	notPEM := filepath.Join(p.dir, "not.pem")
	write(t, notPEM, []byte("hello"))
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no files", opts: Options{}, wantErr: "are required"},
		{name: "missing cert", opts: Options{CertFile: filepath.Join(p.dir, "nope.crt"), KeyFile: p.keyFile}, wantErr: "nope.crt: no such file"},
		{name: "mismatched key", opts: Options{CertFile: p.certFile, KeyFile: otherKey}, wantErr: "private key does not match public key"},
		{name: "bad client CA", opts: Options{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: notPEM}, wantErr: "not.pem: no PEM certificate found"},
		{name: "TLS 1.1", opts: Options{CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: tls.VersionTLS11}, wantErr: "want TLS 1.2 or 1.3"},
		{name: "negative interval", opts: Options{CertFile: p.certFile, KeyFile: p.keyFile, CheckEvery: -1}, wantErr: "negative check interval"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestReloadReportsMissingFile(t *testing.T) {
	p := newPKI(t)
	var got error
	r, err := New(Options{CertFile: p.certFile, KeyFile: p.keyFile, OnError: func(err error) { got = err }})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.keyFile); err != nil {
		t.Fatal(err)
	}
	err = r.Reload()
	if !errors.Is(err, os.ErrNotExist) || !errors.Is(got, os.ErrNotExist) {
		t.Errorf("Reload: got %v (OnError %v), want a not-exist error", err, got)
	}
	if s := r.Info().Subject; s != "CN=server" {
		t.Errorf("served subject %q after a failed reload, want the old CN=server", s)
	}
}

// TestOptionalClientCert: a client without a certificate completes the
// handshake, unverified; one with a trusted certificate is verified; one of
// another CA is still refused. The ALPN protocols are those asked.
func TestOptionalClientCert(t *testing.T) {
	p := newPKI(t)
	r, err := New(Options{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile,
		OptionalClientCert: true, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	addr, results := serve(t, r.TLSConfig())
	good := newCert(t, "operator", p.ca, false, false, true)
	stranger := newCert(t, "stranger", newCert(t, "other CA", nil, true, false, false), false, false, true)
	for _, tc := range []struct {
		name    string
		cert    *issuer
		wantErr string
	}{
		{name: "no certificate"},
		{name: "trusted client", cert: good},
		{name: "certificate of another CA", cert: stranger, wantErr: "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: pool(p.ca), ServerName: "localhost", NextProtos: []string{"http/1.1"}}
			if tc.cert != nil {
				pair := tc.cert.tlsPair()
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
			}
			_, clientErr := dial(addr, cfg)
			serverErr := <-results
			if tc.wantErr == "" {
				if clientErr != nil || serverErr != nil {
					t.Fatalf("handshake: client %v, server %v; want success", clientErr, serverErr)
				}
				return
			}
			if clientErr == nil || serverErr == nil || !strings.Contains(serverErr.Error(), tc.wantErr) {
				t.Errorf("client %v, server %v; want the connection refused with %q", clientErr, serverErr, tc.wantErr)
			}
		})
	}
}
