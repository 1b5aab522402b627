package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
)

// keysServer lists demo-pro-key (by digest) as acme-prod; rule values
// under api_key name keys in clear.
const keysServer = `domains:
  - domain: edge
    descriptors:
      - key: api_key
        value: demo-pro-key
        rate_limit: {unit: minute, requests_per_unit: 1000}
      - key: api_key
        value: other-secret
        rate_limit: {unit: minute, requests_per_unit: 10}
      - key: api_key
        value: "sha256:*"
        rate_limit: {unit: minute, requests_per_unit: 7}
rules_dir: rules
authz:
  domain: edge
  api_key:
    sources: [{header: x-api-key}]
  api_keys:
    # printf %s demo-pro-key | sha256sum
    - {id: acme-prod, key_sha256: 1fbfd5e2a34698deb796eb78add256a067ec065519b8329b1eb85f5e2ef906d4}
  descriptors:
    - entries: [{from: api_key}]
`

// TestRuleKeyValuesCanonical (issue 16, finding 8): rule-file values under
// the API key descriptor key load canonical (a listed key as its id, any
// other as sha256:<hex>), so that rule paths (the rule metric label),
// /config and errors never show a key; the rules still match the keys.
func TestRuleKeyValuesCanonical(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "rules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "rules", "rls.yaml"), []byte("domain: rls\ndescriptors:\n  - key: api_key\n    value: dir-secret\n    rate_limit: {unit: hour, requests_per_unit: 1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "extauthz.yaml")
	if err := os.WriteFile(path, []byte(keysServer), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadFile(path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	ids := cfg.Rules.Identities()
	for _, tc := range []struct{ domain, key, wantPath string }{
		{"edge", "demo-pro-key", "edge.api_key_acme-prod"},
		{"edge", "other-secret", "edge.api_key_" + extract.HashValue("other-secret")},
		{"edge", "unlisted", "edge.api_key_sha256:*"},
		{"rls", "dir-secret", "rls.api_key_" + extract.HashValue("dir-secret")},
	} {
		v := string(ids.AppendKeyID(nil, tc.key, time.Now()))
		r, ok := cfg.Rules.Match(tc.domain, descriptor.Descriptor{{Key: "api_key", Value: v}})
		if !ok || r.Path != tc.wantPath {
			t.Errorf("%s: got rule %v, want %s", tc.key, r, tc.wantPath)
		}
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"demo-pro-key", "other-secret", "dir-secret"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("/config shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(string(out), "value: acme-prod") {
		t.Errorf("/config lacks value: acme-prod:\n%s", out)
	}

	// An error about such a value names it canonical.
	dup := strings.Replace(keysServer, "value: other-secret", "value: acme-prod", 1)
	_, err = Load(strings.NewReader(strings.Replace(dup, "rules_dir: rules\n", "", 1)), "dup.yaml")
	if err == nil || strings.Contains(err.Error(), "demo-pro-key") || !strings.Contains(err.Error(), `value "acme-prod" appears twice`) {
		t.Errorf("got %v, want a duplicate of acme-prod, never the key", err)
	}
}

// TestRedactedAPIKeyExpiry: /config shows an API key's expires only when it
// is set (no "0001-01-01" for keys that never expire), and never the key.
func TestRedactedAPIKeyExpiry(t *testing.T) {
	const file = `
domains:
  - domain: edge
    descriptors:
      - key: api_key
        rate_limit: {unit: minute, requests_per_unit: 10}
authz:
  domain: edge
  api_key:
    sources: [{header: x-api-key}]
  api_keys:
    - {id: forever, key_sha256: 1fbfd5e2a34698deb796eb78add256a067ec065519b8329b1eb85f5e2ef906d4}
    - {id: trial, key_sha256: 2fbfd5e2a34698deb796eb78add256a067ec065519b8329b1eb85f5e2ef906d4, expires: "2030-01-02T03:04:05Z"}
  descriptors:
    - entries: [{from: api_key}]
`
	cfg, err := Load(strings.NewReader(file), "keys.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "0001-01-01") {
		t.Errorf("Redacted prints a zero expiry:\n%s", out)
	}
	if n := strings.Count(string(out), "expires:"); n != 1 || !strings.Contains(string(out), "2030-01-02T03:04:05Z") {
		t.Errorf("Redacted: got %d expires lines, want the trial key's only:\n%s", n, out)
	}
}
