package certs

import (
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/extauthz/extauthz/pkg/field"
)

// ClientSettings is the client side of TLS to a server extauthz dials (an
// xDS management server). Zero values are the documented defaults; the
// zero ClientSettings means plaintext.
type ClientSettings struct {
	// Enabled turns TLS on; setting any file or server_name implies it.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that sign the server's certificate
	// (default: the system roots).
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are the PEM client certificate and its key, for
	// servers that require mutual TLS; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName is the name the server certificate must hold (default:
	// the host part of the address dialled).
	ServerName string `yaml:"server_name"`
}

// On reports whether TLS is used.
func (s *ClientSettings) On() bool { return *s != ClientSettings{} }

// Validate checks s as Config loads it: the files are read, the CA bundle
// must hold a certificate and the client certificate must match its key.
// Errors are *field.Error values with paths such as "ca_file".
func (s *ClientSettings) Validate() error {
	if !s.On() {
		return nil
	}
	var errs []error
	if (s.CertFile == "") != (s.KeyFile == "") {
		errs = append(errs, field.Errorf("", "set both cert_file and key_file for a client certificate, or neither"))
	}
	if s.CAFile != "" {
		if _, err := LoadCAs(s.CAFile); err != nil {
			errs = append(errs, field.Errorf("ca_file", "%w", err))
		}
	}
	if s.CertFile != "" && s.KeyFile != "" {
		if _, err := s.certificate(); err != nil {
			errs = append(errs, field.Errorf("", "%w", err))
		}
	}
	return errors.Join(errs...)
}

// Config returns the *tls.Config of s (TLS 1.2 or later), or nil when TLS
// is off.
func (s *ClientSettings) Config() (*tls.Config, error) {
	if !s.On() {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: s.ServerName}
	if s.CAFile != "" {
		pool, err := LoadCAs(s.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = pool
	}
	if s.CertFile != "" || s.KeyFile != "" {
		cert, err := s.certificate()
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// certificate loads the client certificate and its key.
func (s *ClientSettings) certificate() (tls.Certificate, error) {
	certPEM, err := ReadFile(s.CertFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: client certificate: %w", err)
	}
	keyPEM, err := ReadFile(s.KeyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: client key: %w", err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("certs: cert_file %s and key_file %s are not a certificate and its key: %w", s.CertFile, s.KeyFile, err)
	}
	return cert, nil
}
