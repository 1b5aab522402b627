package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadCAsErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		notPEM:                        "not.pem: no PEM certificate found",
		filepath.Join(dir, "missing"): "missing: no such file",
	} {
		if _, err := LoadCAs(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("LoadCAs(%s): got %v, want an error containing %q", path, err, want)
		}
	}
}
