package certs

import (
	"crypto/x509"
	"fmt"
)

// LoadCAs reads the PEM bundle of CA certificates at path, as the server's
// client_ca_file is read, for a client that verifies its servers (Redis
// TLS). The error names the file.
func LoadCAs(path string) (*x509.CertPool, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	pool, _, err := parseCAs(data)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", path, err)
	}
	return pool, nil
}
