package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAdminSection: the admin section maps onto adminauth.Settings, and its
// errors are placed at their key in the file.
func TestAdminSection(t *testing.T) {
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(strings.NewReader("admin:\n  auth:\n    token_file: "+token+"\n  protect_metrics: true\n"), "ok.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Admin.Auth.TokenFile != token || !cfg.Admin.ProtectMetrics || cfg.Admin.ProtectHealth {
		t.Errorf("admin = %+v, want token_file %s and protect_metrics", cfg.Admin, token)
	}

	_, err = Load(strings.NewReader("http_addr: 127.0.0.1:8080\nadmin:\n  protect_health: true\n  auth:\n    token_file: "+filepath.Join(dir, "missing")+"\n"), "bad.yaml")
	if err == nil {
		t.Fatal("bad admin section loaded")
	}
	for _, want := range []string{
		"bad.yaml:5:17: admin.auth.token_file: open " + filepath.Join(dir, "missing"),
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error\n%v\nwant it to contain %q", err, want)
		}
	}
	_, err = Load(strings.NewReader("admin:\n  protect_health: true\n"), "bad.yaml")
	if want := "bad.yaml:2:19: admin.protect_health: needs a credential to check"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to contain %q", err, want)
	}
	_, err = Load(strings.NewReader("admin:\n  tls:\n    client_ca_file: ca.crt\n"), "bad.yaml")
	if want := "bad.yaml:3:5: admin.tls: cert_file and key_file are required"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to contain %q", err, want)
	}
	_, err = Load(strings.NewReader("admin:\n  auth:\n    tokn_file: x\n"), "bad.yaml")
	if want := `bad.yaml:3:5: admin.auth.tokn_file: unknown field "tokn_file"; did you mean "token_file"?`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want it to contain %q", err, want)
	}
}
