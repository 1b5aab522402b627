package redistest

import (
	"crypto/tls"
	"testing"

	"github.com/extauthz/extauthz/internal/testcerts"
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
	const serverName = "redis.test"
	ca, err := testcerts.NewCA(testcerts.Options{CommonName: "redistest CA"})
	if err != nil {
		return nil, err
	}
	server, err := ca.Issue(testcerts.Server(serverName, serverName, "127.0.0.1"))
	if err != nil {
		return nil, err
	}
	client, err := ca.Issue(testcerts.Client("redistest client"))
	if err != nil {
		return nil, err
	}
	f := &TLSFiles{ServerName: serverName}
	if f.CAFile, err = testcerts.WriteFile(dir, "ca.crt", ca.CertPEM()); err != nil {
		return nil, err
	}
	if f.ServerCert, f.ServerKey, err = server.WritePair(dir, "server"); err != nil {
		return nil, err
	}
	if f.ClientCert, f.ClientKey, err = client.WritePair(dir, "client"); err != nil {
		return nil, err
	}
	f.clientConfig = &tls.Config{RootCAs: testcerts.Pool(ca), Certificates: []tls.Certificate{client.TLS()}, ServerName: serverName, MinVersion: tls.VersionTLS12}
	return f, nil
}

// ClientConfig returns a client TLS configuration trusting the CA and
// presenting the client certificate.
func (f *TLSFiles) ClientConfig() *tls.Config { return f.clientConfig.Clone() }
