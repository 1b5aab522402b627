// Package testcerts issues X.509 certificates for tests: a self-signed CA
// that signs server and client certificates for given names, addresses,
// extended key usages and validity, as PEM bytes and as files laid out the
// way a Kubernetes TLS Secret mounts them (ca.crt, tls.crt, tls.key).
//
// The core returns errors so that helper packages such as
// internal/redistest can use it; the Must helpers wrap it for tests.
// Keys are ECDSA P-256, written as PKCS #8 "PRIVATE KEY" blocks.
package testcerts

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Options describe one certificate. The zero value is a certificate with
// no names and no extended key usage, valid from an hour ago for a day.
type Options struct {
	CommonName string
	DNSNames   []string
	IPs        []net.IP
	Usages     []x509.ExtKeyUsage
	// NotBefore and NotAfter default to an hour ago and a day from now;
	// set them (in the past, say) for expiry tests.
	NotBefore, NotAfter time.Time
}

// Server is Options for a server certificate for cn whose hosts are DNS
// names or IP addresses.
func Server(cn string, hosts ...string) Options {
	o := Options{CommonName: cn, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			o.IPs = append(o.IPs, ip)
		} else {
			o.DNSNames = append(o.DNSNames, h)
		}
	}
	return o
}

// Client is Options for a client certificate for cn.
func Client(cn string) Options {
	return Options{CommonName: cn, Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
}

// Cert is a certificate with its private key.
type Cert struct {
	Cert   *x509.Certificate
	Key    *ecdsa.PrivateKey
	keyDER []byte // PKCS #8
}

// NewCA makes a self-signed CA certificate from o. A CA with names and
// usages can serve as its own server or client certificate.
func NewCA(o Options) (*Cert, error) { return create(o, nil) }

// Issue makes a certificate from o signed by ca.
func (ca *Cert) Issue(o Options) (*Cert, error) { return create(o, ca) }

func create(o Options, parent *Cert) (*Cert, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("testcerts: key for %q: %w", o.CommonName, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return nil, fmt.Errorf("testcerts: serial for %q: %w", o.CommonName, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: o.CommonName},
		NotBefore:             o.NotBefore,
		NotAfter:              o.NotAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           o.Usages,
		DNSNames:              o.DNSNames,
		IPAddresses:           o.IPs,
		BasicConstraintsValid: true,
	}
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = now.Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = now.Add(24 * time.Hour)
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		signer, signerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		return nil, fmt.Errorf("testcerts: certificate %q: %w", o.CommonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("testcerts: certificate %q: %w", o.CommonName, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("testcerts: key for %q: %w", o.CommonName, err)
	}
	return &Cert{Cert: cert, Key: key, keyDER: keyDER}, nil
}

// CertPEM is the certificate as a PEM "CERTIFICATE" block.
func (c *Cert) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Cert.Raw})
}

// KeyPEM is the private key as a PEM PKCS #8 "PRIVATE KEY" block.
func (c *Cert) KeyPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: c.keyDER})
}

// TLS is the certificate for tls.Config.Certificates.
func (c *Cert) TLS() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}
}

// Pool returns a pool trusting the given certificates.
func Pool(cas ...*Cert) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range cas {
		p.AddCert(c.Cert)
	}
	return p
}

// WriteFile writes data to dir/name and returns the path.
func WriteFile(dir, name string, data []byte) (string, error) {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", fmt.Errorf("testcerts: %w", err)
	}
	return p, nil
}

// WritePair writes the certificate and key to dir/name.crt and
// dir/name.key and returns their paths.
func (c *Cert) WritePair(dir, name string) (certFile, keyFile string, err error) {
	if certFile, err = WriteFile(dir, name+".crt", c.CertPEM()); err != nil {
		return "", "", err
	}
	if keyFile, err = WriteFile(dir, name+".key", c.KeyPEM()); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// Files are the paths WriteFiles wrote.
type Files struct {
	CAFile, CertFile, KeyFile string
}

// WriteFiles writes ca.crt (the CA), tls.crt and tls.key (the leaf) into
// dir, as a Kubernetes TLS Secret volume holds them.
func WriteFiles(dir string, ca, leaf *Cert) (Files, error) {
	var f Files
	var err error
	if f.CAFile, err = WriteFile(dir, "ca.crt", ca.CertPEM()); err != nil {
		return Files{}, err
	}
	if f.CertFile, err = WriteFile(dir, "tls.crt", leaf.CertPEM()); err != nil {
		return Files{}, err
	}
	if f.KeyFile, err = WriteFile(dir, "tls.key", leaf.KeyPEM()); err != nil {
		return Files{}, err
	}
	return f, nil
}

// MustCA is NewCA failing t on error.
func MustCA(t testing.TB, o Options) *Cert {
	t.Helper()
	c, err := NewCA(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MustIssue is ca.Issue failing t on error.
func MustIssue(t testing.TB, ca *Cert, o Options) *Cert {
	t.Helper()
	c, err := ca.Issue(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// MustWriteFile is WriteFile failing t on error.
func MustWriteFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p, err := WriteFile(dir, name, data)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// MustWriteFiles is WriteFiles failing t on error.
func MustWriteFiles(t testing.TB, dir string, ca, leaf *Cert) Files {
	t.Helper()
	f, err := WriteFiles(dir, ca, leaf)
	if err != nil {
		t.Fatal(err)
	}
	return f
}
