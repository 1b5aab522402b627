package config

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/golden"
	"github.com/extauthz/extauthz/internal/testcerts"
	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/logging"
	"github.com/extauthz/extauthz/pkg/server"
)

func TestOpsDefaults(t *testing.T) {
	cfg, err := Load(strings.NewReader(""), "empty.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Ops{
		Log: logging.Settings{Level: "info", Format: "text"},
		Limits: Limits{Bounds: descriptor.Bounds{MaxDescriptors: 64, MaxEntries: 32, MaxKeyLength: 256, MaxValueLength: 4096,
			MaxHitsAddend: 1_000_000_000}, MaxMessageBytes: 1 << 20},
		GRPC: server.GRPCSettings{MaxConcurrentStreams: 1024, KeepaliveTime: 30 * time.Second, KeepaliveTimeout: 10 * time.Second,
			MinPingInterval: 10 * time.Second},
	}
	if cfg.Ops != want {
		t.Errorf("defaults:\ngot  %+v\nwant %+v", cfg.Ops, want)
	}
	if cfg.TLS.Enabled() {
		t.Error("TLS.Enabled() = true without a tls section, want false")
	}
	if got, want := cfg.Limits.Bounds, (descriptor.Bounds{}).WithDefaults(); got != want {
		t.Errorf("Bounds = %+v, want the descriptor defaults %+v", got, want)
	}
}

func TestOpsGood(t *testing.T) {
	cfg, err := LoadFile("testdata/ops/ops.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Ops{
		Log: logging.Settings{Level: "debug", Format: "json"},
		Limits: Limits{Bounds: descriptor.Bounds{MaxDescriptors: 8, MaxEntries: 4, MaxKeyLength: 64, MaxValueLength: 512,
			MaxHitsAddend: 1000}, MaxMessageBytes: 65536},
		GRPC: server.GRPCSettings{MaxConcurrentStreams: 100, KeepaliveTime: time.Minute, KeepaliveTimeout: 5 * time.Second,
			MinPingInterval: 5 * time.Second, MaxConnectionAge: 30 * time.Minute, MaxConnectionAgeGrace: 10 * time.Second},
	}
	if cfg.Ops != want {
		t.Errorf("ops:\ngot  %+v\nwant %+v", cfg.Ops, want)
	}
	wantBounds := descriptor.Bounds{MaxDescriptors: 8, MaxEntries: 4, MaxKeyLength: 64, MaxValueLength: 512, MaxHitsAddend: 1000}
	if got := cfg.Limits.Bounds; got != wantBounds {
		t.Errorf("Bounds = %+v, want %+v", got, wantBounds)
	}
	roundTrip(t, cfg)
}

// TestOpsBad checks the errors of each testdata/ops/*.bad.yaml against its
// .golden file (go test -run TestOpsBad -update rewrites them).
func TestOpsBad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "ops", "*.bad.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := LoadFile(file)
			if err == nil {
				t.Fatal("got no error, want some")
			}
			golden.Check(t, strings.TrimSuffix(file, ".yaml")+".golden", err.Error()+"\n")
		})
	}
}

// writePair writes a self-signed certificate for localhost and its key as
// PEM files into dir and returns their paths.
func writePair(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	c := testcerts.MustCA(t, testcerts.Options{CommonName: name, DNSNames: []string{"localhost"}})
	certFile, keyFile, err := c.WritePair(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func TestOpsTLS(t *testing.T) {
	dir := t.TempDir()
	cert, key := writePair(t, dir, "server")
	ca, otherKey := writePair(t, dir, "ca")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		yaml    string
		want    certs.Settings // when wantErr is ""
		wantErr string         // substring
	}{
		{
			name: "server certificate",
			yaml: fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", cert, key),
			want: certs.Settings{CertFile: cert, KeyFile: key, MinVersion: "1.2"},
		},
		{
			name: "mTLS and TLS 1.3",
			yaml: fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s, min_version: 1.3}", cert, key, ca),
			want: certs.Settings{CertFile: cert, KeyFile: key, ClientCAFile: ca, MinVersion: "1.3"},
		},
		{
			name:    "key of another certificate",
			yaml:    fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", cert, otherKey),
			wantErr: "x.yaml:1:6: tls: cert_file " + cert + " and key_file " + otherKey + " are not a certificate and its key",
		},
		{
			name:    "a directory",
			yaml:    fmt.Sprintf("tls: {cert_file: %s, key_file: %s}", dir, key),
			wantErr: "tls.cert_file: " + dir + " is not a regular file",
		},
		{
			name:    "bad client CA",
			yaml:    fmt.Sprintf("tls: {cert_file: %s, key_file: %s, client_ca_file: %s}", cert, key, garbage),
			wantErr: "tls.client_ca_file: certificate 1: x509:",
		},
		{
			name:    "client CA without a server certificate",
			yaml:    fmt.Sprintf("tls: {client_ca_file: %s}", ca),
			wantErr: "x.yaml:1:6: tls: cert_file and key_file are required",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(strings.NewReader(tc.yaml), "x.yaml")
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Load: got error %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if cfg.TLS != tc.want {
				t.Errorf("TLS: got %+v, want %+v", cfg.TLS, tc.want)
			}
			if !cfg.TLS.Enabled() {
				t.Error("Enabled() = false, want true")
			}
			wantVersion := uint16(tls.VersionTLS12)
			if tc.want.MinVersion == "1.3" {
				wantVersion = tls.VersionTLS13
			}
			if got := cfg.TLS.Version(); got != wantVersion {
				t.Errorf("Version() = %#x, want %#x", got, wantVersion)
			}
			roundTrip(t, cfg)
		})
	}
}
