package redistest

import (
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
)

// TLSFiles are PEM files for a TLS-only server that requires client
// certificates: a CA, the server's certificate (for 127.0.0.1 and
// ServerName) and a client certificate, all signed by the CA.
type TLSFiles struct {
	CAFile                string
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	ServerName            string
	clientConfig          *tls.Config
}

// StartTLS starts a redis-server that accepts only TLS connections with a
// client certificate, on a free loopback port, and returns it with the
// files a client needs. It stops when t ends.
func StartTLS(t testing.TB) (*Server, *TLSFiles) {
	t.Helper()
	bin := Binary(t, "redis-server")
	files, err := writeTLSFiles(t.TempDir())
	if err != nil {
		t.Fatalf("redistest: %v", err)
	}
	s := startServerWith(t, bin, "redis", nil, func(port int) []string {
		return []string{
			"port 0",
			"tls-port " + itoa(port),
			"tls-cert-file " + files.ServerCert,
			"tls-key-file " + files.ServerKey,
			"tls-ca-cert-file " + files.CAFile,
			"tls-auth-clients yes",
		}
	}, files.clientConfig)
	return s, files
}

func writeTLSFiles(dir string) (*TLSFiles, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	f := &TLSFiles{
		CAFile:     filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server-key.pem"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client-key.pem"),
		ServerName: "redis.test",
	}
	if err := writePEM(f.CAFile, "CERTIFICATE", caDER); err != nil {
		return nil, err
	}
	leaf := func(serial int64, cn string, usage x509.ExtKeyUsage, certPath, keyPath string) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: cn},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.Add(24 * time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			DNSNames:     []string{f.ServerName},
			IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
			return err
		}
		return writePEM(keyPath, "EC PRIVATE KEY", keyDER)
	}
	if err := leaf(2, f.ServerName, x509.ExtKeyUsageServerAuth, f.ServerCert, f.ServerKey); err != nil {
		return nil, err
	}
	if err := leaf(3, "redistest client", x509.ExtKeyUsageClientAuth, f.ClientCert, f.ClientKey); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	f.clientConfig = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, ServerName: f.ServerName, MinVersion: tls.VersionTLS12}
	return f, nil
}

// ClientConfig returns a client TLS configuration trusting the CA and
// presenting the client certificate.
func (f *TLSFiles) ClientConfig() *tls.Config { return f.clientConfig.Clone() }

func writePEM(path, typ string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}
