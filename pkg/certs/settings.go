package certs

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/pkg/field"
)

// Settings is the server file's tls section: the files New serves from.
// Zero values are the documented defaults; the zero Settings means
// plaintext. Paths are used as written (relative to the working directory).
type Settings struct {
	// CertFile and KeyFile are the PEM server certificate (chain) and its
	// private key. Setting them turns TLS on.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, is a PEM bundle of the CAs that sign client
	// certificates: every client must then present a certificate they
	// verify (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is the oldest TLS version accepted: "1.2" (default) or
	// "1.3". Envoy's upstream TLS defaults to at most 1.2: set its
	// tls_maximum_protocol_version to TLSv1_3 before choosing "1.3".
	MinVersion string `yaml:"min_version"`
}

// MinVersions are the names Settings.MinVersion accepts, by TLS version.
var MinVersions = []string{"1.2", "1.3"}

// DefaultMinVersion is the MinVersion of Settings that leave it empty.
const DefaultMinVersion = "1.2"

// Enabled reports whether TLS is configured.
func (s *Settings) Enabled() bool { return s.CertFile != "" }

// Version returns MinVersion as a crypto/tls constant (tls.VersionTLS12
// when unset).
func (s *Settings) Version() uint16 {
	if s.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// WithDefaults returns s with MinVersion filled in, unless s is the zero
// Settings (plaintext).
func (s Settings) WithDefaults() Settings {
	if s != (Settings{}) && s.MinVersion == "" {
		s.MinVersion = DefaultMinVersion
	}
	return s
}

// Validate checks s as New would load it: the files are read, the
// certificate must match its key and the client CA bundle must hold a
// certificate. Errors are *field.Error values with paths such as
// "cert_file" ("" for the pair).
func (s *Settings) Validate() error {
	if *s == (Settings{}) {
		return nil
	}
	var errs []error
	if s.MinVersion != "" && !slices.Contains(MinVersions, s.MinVersion) {
		errs = append(errs, field.Errorf("min_version", "unknown value %q: choices are %s", s.MinVersion, strings.Join(MinVersions, ", ")))
	}
	switch {
	case s.CertFile == "" && s.KeyFile == "":
		return errors.Join(append(errs, field.Errorf("", "cert_file and key_file are required to serve TLS; remove the tls section for plaintext"))...)
	case s.CertFile == "":
		return errors.Join(append(errs, field.Errorf("cert_file", "missing: key_file needs its certificate, cert_file"))...)
	case s.KeyFile == "":
		return errors.Join(append(errs, field.Errorf("key_file", "missing: cert_file needs its private key, key_file"))...)
	}
	certPEM, certErr := ReadFile(s.CertFile)
	if certErr != nil {
		errs = append(errs, field.Errorf("cert_file", "%w", certErr))
	}
	keyPEM, keyErr := ReadFile(s.KeyFile)
	if keyErr != nil {
		errs = append(errs, field.Errorf("key_file", "%w", keyErr))
	}
	if certErr == nil && keyErr == nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			errs = append(errs, field.Errorf("", "cert_file %s and key_file %s are not a certificate and its key: %w", s.CertFile, s.KeyFile, err))
		}
	}
	if s.ClientCAFile != "" {
		caPEM, err := ReadFile(s.ClientCAFile)
		if err == nil {
			_, _, err = parseCAs(caPEM)
		}
		if err != nil {
			errs = append(errs, field.Errorf("client_ca_file", "%w", err))
		}
	}
	return errors.Join(errs...)
}

// ReadFile reads a PEM file: a regular file (symlinks followed, as in
// Kubernetes Secret volumes) of at most 1 MiB.
func ReadFile(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxFile {
		return nil, fmt.Errorf("%s is larger than %d KiB: expected PEM certificates", path, maxFile>>10)
	}
	return data, nil
}
