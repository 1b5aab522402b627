package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

	"github.com/extauthz/extauthz/internal/testcerts"
)

// serverCert is a server certificate for localhost and 127.0.0.1 signed
// by ca.
func serverCert(t *testing.T, ca *testcerts.Cert, cn string) *testcerts.Cert {
	t.Helper()
	return testcerts.MustIssue(t, ca, testcerts.Server(cn, "localhost", "127.0.0.1"))
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
	ca                        *testcerts.Cert
	server                    *testcerts.Cert
	certFile, keyFile, caFile string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.ca = testcerts.MustCA(t, testcerts.Options{CommonName: "test CA"})
	p.server = serverCert(t, p.ca, "server")
	f := testcerts.MustWriteFiles(t, p.dir, p.ca, p.server)
	p.certFile, p.keyFile, p.caFile = f.CertFile, f.KeyFile, f.CAFile
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
	got, err := dial(addr, &tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "localhost"})
	if err != nil {
		t.Fatalf("handshake: %v", err)
	}
	if err := <-results; err != nil {
		t.Fatalf("server handshake: %v", err)
	}
	if got.SerialNumber.Cmp(p.server.Cert.SerialNumber) != 0 {
		t.Errorf("served serial %v, want %v", got.SerialNumber, p.server.Cert.SerialNumber)
	}
	info := r.Info()
	if info.Subject != "CN=server" || !info.NotAfter.Equal(p.server.Cert.NotAfter) || info.ClientCAs != 0 {
		t.Errorf("Info: got %+v, want CN=server, NotAfter %v, no client CAs", info, p.server.Cert.NotAfter)
	}
	// Without client CAs, a client certificate is not needed.
	if _, err := dial(addr, &tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12}); err != nil {
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
	good := testcerts.MustIssue(t, p.ca, testcerts.Client("envoy"))
	otherCA := testcerts.MustCA(t, testcerts.Options{CommonName: "other CA"})
	stranger := testcerts.MustIssue(t, otherCA, testcerts.Client("stranger"))

	tests := []struct {
		name       string
		cert       *testcerts.Cert // sent even if the server does not ask for its CA
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
			cfg := &tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "localhost", MaxVersion: tc.maxVersion}
			if tc.cert != nil {
				pair := tc.cert.TLS()
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
	if _, err := dial(addr, &tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "localhost", MaxVersion: tls.VersionTLS12}); err == nil {
		t.Error("TLS 1.2 client: got success, want refusal")
	}
	if err := <-results; err == nil || !strings.Contains(err.Error(), "unsupported versions") {
		t.Errorf("server: got %v, want an unsupported version error", err)
	}
	if _, err := dial(addr, &tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "localhost"}); err != nil {
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
	client := &tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "localhost"}
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
	if got := served(); got.Cmp(p.server.Cert.SerialNumber) != 0 {
		t.Fatalf("serial %v, want %v", got, p.server.Cert.SerialNumber)
	}

	// Replace the files (as cert-manager does, key and certificate).
	next := serverCert(t, p.ca, "server")
	write(t, p.certFile, next.CertPEM())
	write(t, p.keyFile, next.KeyPEM())
	// Within CheckEvery the files are not looked at.
	if got := served(); got.Cmp(p.server.Cert.SerialNumber) != 0 {
		t.Errorf("serial before the check interval: %v, want the old %v", got, p.server.Cert.SerialNumber)
	}
	clk.advance(DefaultCheckEvery)
	if got := served(); got.Cmp(next.Cert.SerialNumber) != 0 {
		t.Errorf("serial after rotation: %v, want the new %v", got, next.Cert.SerialNumber)
	}
	if reloads.Load() != 1 || errs.Load() != 0 {
		t.Errorf("callbacks: %d reloads, %d errors; want 1, 0", reloads.Load(), errs.Load())
	}

	// Half a rotation: a new certificate, the old key. The old pair keeps
	// serving, and the error is reported once.
	third := serverCert(t, p.ca, "server")
	write(t, p.certFile, third.CertPEM())
	for range 3 {
		clk.advance(DefaultCheckEvery)
		if got := served(); got.Cmp(next.Cert.SerialNumber) != 0 {
			t.Errorf("serial with a mismatched key: %v, want the previous %v", got, next.Cert.SerialNumber)
		}
	}
	if errs.Load() != 1 {
		t.Errorf("errors reported for one broken set: %d, want 1", errs.Load())
	}
	write(t, p.keyFile, third.KeyPEM())
	clk.advance(DefaultCheckEvery)
	if got := served(); got.Cmp(third.Cert.SerialNumber) != 0 {
		t.Errorf("serial once the key follows: %v, want %v", got, third.Cert.SerialNumber)
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
	ca := testcerts.MustCA(t, testcerts.Options{CommonName: "CA"})
	version := func(n int, c *testcerts.Cert) {
		ts := filepath.Join(dir, "..v"+string(rune('0'+n)))
		if err := os.Mkdir(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		testcerts.MustWriteFiles(t, ts, ca, c)
		if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, "..data_tmp")); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	first := serverCert(t, ca, "server")
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
	second := serverCert(t, ca, "server-2")
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

	client := testcerts.MustIssue(t, p.ca, testcerts.Client("envoy"))
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
	if err := check(&tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "localhost", Certificates: []tls.Certificate{client.TLS()}}); err != nil {
		t.Errorf("health check over mTLS: %v", err)
	}
	if err := check(&tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "localhost"}); err == nil {
		t.Error("health check without a client certificate: got success, want failure")
	}
}

func TestNewErrors(t *testing.T) {
	p := newPKI(t)
	other := serverCert(t, p.ca, "other")
	otherKey := filepath.Join(p.dir, "other.key")
	write(t, otherKey, other.KeyPEM())
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
	good := testcerts.MustIssue(t, p.ca, testcerts.Client("operator"))
	stranger := testcerts.MustIssue(t, testcerts.MustCA(t, testcerts.Options{CommonName: "other CA"}), testcerts.Client("stranger"))
	for _, tc := range []struct {
		name    string
		cert    *testcerts.Cert
		wantErr string
	}{
		{name: "no certificate"},
		{name: "trusted client", cert: good},
		{name: "certificate of another CA", cert: stranger, wantErr: "unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &tls.Config{RootCAs: testcerts.Pool(p.ca), ServerName: "localhost", NextProtos: []string{"http/1.1"}}
			if tc.cert != nil {
				pair := tc.cert.TLS()
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
