package main

import (
	"bytes"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/adminauth"
	"github.com/extauthz/extauthz/pkg/config"
)

// TestAdminListenerWarnsJSONBypass: when the gRPC listener requires client
// certificates, an admin listener without a credential is warned about,
// since its /json answers the same API without one.
func TestAdminListenerWarnsJSONBypass(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("admin-test-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		grpcCA     string
		adminToken string
		warn       bool
	}{
		{"gRPC mTLS, open admin", "/etc/ca.pem", "", true},
		{"gRPC mTLS, admin token", "/etc/ca.pem", tokenFile, false},
		{"no gRPC mTLS", "", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config.Config{}
			cfg.TLS.ClientCAFile = tc.grpcCA
			cfg.Admin.Auth.TokenFile = tc.adminToken
			a, err := adminauth.New(cfg.Admin, nil)
			if err != nil {
				t.Fatal(err)
			}
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			var logs bytes.Buffer
			adminListener(lis, cfg, a, slog.New(slog.NewTextHandler(&logs, nil)))
			got := strings.Contains(logs.String(), "the same API over HTTP, needs no credential")
			if got != tc.warn {
				t.Errorf("warned %v, want %v; logs:\n%s", got, tc.warn, logs.String())
			}
			if strings.Contains(logs.String(), "open to the network") {
				t.Errorf("a loopback listener was warned about as open to the network:\n%s", logs.String())
			}
		})
	}
}
