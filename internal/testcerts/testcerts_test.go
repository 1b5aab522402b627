package testcerts_test

import (
	"crypto/tls"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/testcerts"
)

// TestIssue: leaves verify against their CA for their usages and names
// only, not against another CA, and only within their validity.
func TestIssue(t *testing.T) {
	ca := testcerts.MustCA(t, testcerts.Options{CommonName: "test CA"})
	other := testcerts.MustCA(t, testcerts.Options{CommonName: "other CA"})
	srv := testcerts.MustIssue(t, ca, testcerts.Server("server", "localhost", "127.0.0.1"))
	cli := testcerts.MustIssue(t, ca, testcerts.Client("client"))
	past := time.Now().Add(-48 * time.Hour)
	expired := testcerts.MustIssue(t, ca, testcerts.Options{CommonName: "old", NotBefore: past, NotAfter: past.Add(time.Hour),
		Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, DNSNames: []string{"localhost"}})
	server := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	tests := []struct {
		name    string
		c       *testcerts.Cert
		opts    x509.VerifyOptions
		wantErr bool
	}{
		{"server by name", srv, x509.VerifyOptions{Roots: testcerts.Pool(ca), DNSName: "localhost", KeyUsages: server}, false},
		{"server by IP", srv, x509.VerifyOptions{Roots: testcerts.Pool(ca), DNSName: "127.0.0.1", KeyUsages: server}, false},
		{"server, other name", srv, x509.VerifyOptions{Roots: testcerts.Pool(ca), DNSName: "example.com", KeyUsages: server}, true},
		{"server as client", srv, x509.VerifyOptions{Roots: testcerts.Pool(ca), KeyUsages: client}, true},
		{"client", cli, x509.VerifyOptions{Roots: testcerts.Pool(ca), KeyUsages: client}, false},
		{"client as server", cli, x509.VerifyOptions{Roots: testcerts.Pool(ca), KeyUsages: server}, true},
		{"other CA", cli, x509.VerifyOptions{Roots: testcerts.Pool(other), KeyUsages: client}, true},
		{"expired", expired, x509.VerifyOptions{Roots: testcerts.Pool(ca), DNSName: "localhost", KeyUsages: server}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.c.Cert.Verify(tc.opts)
			if (err != nil) != tc.wantErr {
				t.Errorf("Verify: error %v, want error %v", err, tc.wantErr)
			}
		})
	}
	if want := past.Add(time.Hour).Truncate(time.Second); !expired.Cert.NotAfter.Equal(want) {
		t.Errorf("NotAfter %v, want %v", expired.Cert.NotAfter, want)
	}
	if srv.Cert.SerialNumber.Cmp(cli.Cert.SerialNumber) == 0 {
		t.Error("two certificates share a serial number")
	}
}

// TestWriteFiles: the files load as a key pair and a CA.
func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	ca := testcerts.MustCA(t, testcerts.Options{CommonName: "test CA"})
	leaf := testcerts.MustIssue(t, ca, testcerts.Server("server", "localhost"))
	f := testcerts.MustWriteFiles(t, dir, ca, leaf)
	for _, p := range []string{f.CAFile, f.CertFile, f.KeyFile} {
		if !strings.HasPrefix(p, dir) {
			t.Errorf("%s is not in %s", p, dir)
		}
	}
	pair, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if pair.Leaf == nil || pair.Leaf.Subject.CommonName != "server" {
		t.Errorf("tls.crt holds %v, want CN=server", pair.Leaf)
	}
	certFile, keyFile, err := leaf.WritePair(dir, "again")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		t.Errorf("WritePair: %v", err)
	}
	if _, err := testcerts.WriteFile(dir+"/missing", "x", nil); err == nil {
		t.Error("WriteFile into a missing directory: no error")
	}
}
