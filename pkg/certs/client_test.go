package certs

import (
	"crypto/tls"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/internal/testcerts"
	"github.com/extauthz/extauthz/pkg/field"
)

func TestClientSettingsValidate(t *testing.T) {
	p := newPKI(t)
	client := testcerts.MustIssue(t, p.ca, testcerts.Client("client"))
	clientCert, clientKey, err := client.WritePair(p.dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(p.dir, "garbage.pem")
	write(t, garbage, []byte("not PEM"))
	tests := []struct {
		name     string
		s        ClientSettings
		wantPath string // "" with wantErr "": valid
		wantErr  string
	}{
		{name: "zero is plaintext", s: ClientSettings{}},
		{name: "enabled, system roots", s: ClientSettings{Enabled: true}},
		{name: "all files", s: ClientSettings{CAFile: p.caFile, CertFile: clientCert, KeyFile: clientKey, ServerName: "localhost"}},
		{name: "missing CA file", s: ClientSettings{CAFile: filepath.Join(p.dir, "nope.crt")}, wantPath: "ca_file", wantErr: "no such file"},
		{name: "CA file without certificates", s: ClientSettings{CAFile: garbage}, wantPath: "ca_file", wantErr: "garbage.pem"},
		{name: "cert without key", s: ClientSettings{CertFile: clientCert}, wantErr: "set both cert_file and key_file"},
		{name: "mismatched pair", s: ClientSettings{CertFile: clientCert, KeyFile: p.keyFile}, wantErr: "are not a certificate and its key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate: got %v, want an error containing %q", err, tc.wantErr)
			}
			found := false
			field.Each(err, func(path string, _ error) { found = found || path == tc.wantPath })
			if !found {
				t.Errorf("Validate: got %v, want an error at path %q", err, tc.wantPath)
			}
		})
	}
}

// TestClientSettingsConfig handshakes with a server that requires a client
// certificate, with and without the right settings.
func TestClientSettingsConfig(t *testing.T) {
	p := newPKI(t)
	client := testcerts.MustIssue(t, p.ca, testcerts.Client("client"))
	clientCert, clientKey, err := client.WritePair(p.dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := serve(t, &tls.Config{
		Certificates: []tls.Certificate{p.server.TLS()},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    testcerts.Pool(p.ca),
		MinVersion:   tls.VersionTLS12,
	})
	if cfg, err := (&ClientSettings{}).Config(); cfg != nil || err != nil {
		t.Fatalf("zero Config: got %v, %v; want nil, nil", cfg, err)
	}
	tests := []struct {
		name   string
		s      ClientSettings
		wantOK bool
	}{
		{name: "mutual TLS", s: ClientSettings{CAFile: p.caFile, CertFile: clientCert, KeyFile: clientKey, ServerName: "localhost"}, wantOK: true},
		{name: "no client certificate", s: ClientSettings{CAFile: p.caFile, ServerName: "localhost"}},
		{name: "system roots do not know the CA", s: ClientSettings{CertFile: clientCert, KeyFile: clientKey, ServerName: "localhost"}},
		{name: "wrong server name", s: ClientSettings{CAFile: p.caFile, CertFile: clientCert, KeyFile: clientKey, ServerName: "other.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.s.Config()
			if err != nil {
				t.Fatalf("Config: %v", err)
			}
			_, err = dial(addr, cfg)
			if ok := err == nil; ok != tc.wantOK {
				t.Errorf("handshake: got error %v, want success %v", err, tc.wantOK)
			}
		})
	}
}
