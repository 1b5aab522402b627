package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// writeRuntime creates files (path relative to dir: its domain) as rule
// files, each with one rule of its own domain.
func writeRuntime(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, domain := range files {
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := "domain: " + domain + "\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRuntimeLayout: the files a runtime section reads are exactly the ones
// envoyproxy/ratelimit reads for the same RUNTIME_* settings.
func TestRuntimeLayout(t *testing.T) {
	files := map[string]string{
		"ratelimit/config/a.yaml":           "a",
		"ratelimit/config/nested/b.yaml":    "b", // any depth
		"ratelimit/config/c.conf":           "c", // any name
		"ratelimit/config.d.yaml":           "d", // key config.d.yaml: a root-mode match
		"ratelimit/configx.yaml":            "x", // key configx.yaml: no match
		"ratelimit/other/e.yaml":            "e", // not under the app directory
		"ratelimit/config/.hidden.yaml":     "h", // a dot file
		"ratelimit/config/..2026_01/f.yaml": "f", // a ConfigMap's timestamped directory
		"elsewhere/config/g.yaml":           "g", // another subdirectory
	}
	tests := []struct {
		name    string
		runtime string
		want    []string
	}{
		{"watch root", "{subdirectory: ratelimit}", []string{"a", "b", "c", "d", "f", "h"}},
		{"watch root, ignore dot files", "{subdirectory: ratelimit, ignore_dot_files: true}", []string{"a", "b", "c", "d"}},
		{"watch app directory", "{subdirectory: ratelimit, watch: app_directory}", []string{"a", "b", "c", "f", "h"}},
		{"app directory, ignore dot files", "{subdirectory: ratelimit, watch: app_directory, ignore_dot_files: true}", []string{"a", "b", "c"}},
		{"app directory without subdirectory", "{subdirectory: '', app_directory: ratelimit/other, watch: app_directory}", []string{"e"}},
		{"another app directory", "{subdirectory: ratelimit, app_directory: other}", []string{"e"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeRuntime(t, dir, files)
			doc := "runtime: " + strings.Replace(tc.runtime, "{", "{root: '"+dir+"', ", 1) + "\n"
			cfg, err := Load(strings.NewReader(doc), filepath.Join(t.TempDir(), "extauthz.yaml"))
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			got := slices.Sorted(slices.Values(cfg.Rules.Domains()))
			if !slices.Equal(got, tc.want) {
				t.Errorf("domains %v, want %v", got, tc.want)
			}
			if len(cfg.RuleFiles) != len(tc.want) {
				t.Errorf("RuleFiles %v, want %d files", cfg.RuleFiles, len(tc.want))
			}
		})
	}
}

// TestRuntimeSymlinks: a symlinked file is read, a symlinked directory is
// not walked (Kubernetes' "..data"), and a symlinked root is followed.
func TestRuntimeSymlinks(t *testing.T) {
	dir := t.TempDir()
	writeRuntime(t, filepath.Join(dir, "v1"), map[string]string{"ratelimit/config/..2026/a.yaml": "a"})
	app := filepath.Join(dir, "v1", "ratelimit", "config")
	for _, l := range [][2]string{{"..2026", filepath.Join(app, "..data")}, {"..data/a.yaml", filepath.Join(app, "a.yaml")}, {filepath.Join(dir, "v1"), filepath.Join(dir, "current")}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	doc := "runtime: {root: " + filepath.Join(dir, "current") + ", subdirectory: ratelimit, ignore_dot_files: true}\n"
	cfg, err := Load(strings.NewReader(doc), "x.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := cfg.Rules.Domains(); !slices.Equal(got, []string{"a"}) {
		t.Errorf("domains %v, want [a] (the symlinked file, once)", got)
	}
	// Without ignore_dot_files the timestamped directory defines a again,
	// an error as in envoyproxy/ratelimit.
	doc = strings.Replace(doc, "ignore_dot_files: true", "ignore_dot_files: false", 1)
	if _, err := Load(strings.NewReader(doc), "x.yaml"); err == nil || !strings.Contains(err.Error(), "a") {
		t.Errorf("without ignore_dot_files: got %v, want a duplicate domain error", err)
	}
}

func TestRuntimeErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct{ runtime, want string }{
		{"{}", "runtime.root: missing"},
		{"{root: " + dir + "}", "runtime.subdirectory: missing: with watch: root"},
		{"{root: " + dir + ", subdirectory: nope}", "the rule directory does not exist"},
		{"{root: " + dir + ", subdirectory: ../etc}", `runtime.subdirectory: "../etc" must be a relative path`},
		{"{root: " + dir + ", subdirectory: s, app_directory: /abs}", "runtime.app_directory"},
		{"{root: " + dir + ", subdirectory: s, watch: always}", `runtime.watch: "always": expected root`},
	}
	for _, tc := range tests {
		t.Run(tc.runtime, func(t *testing.T) {
			_, err := Load(strings.NewReader("runtime: "+tc.runtime+"\n"), "x.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestRuntimeMerge: with merge_domain_config, runtime files of one domain
// are merged, as MERGE_DOMAIN_CONFIG merges the reference's runtime files.
func TestRuntimeMerge(t *testing.T) {
	dir := t.TempDir()
	for name, key := range map[string]string{"a.yaml": "a", "b.yaml": "b"} {
		p := filepath.Join(dir, "rl", "config", name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		body := "domain: edge\ndescriptors:\n  - key: " + key + "\n    rate_limit: {unit: second, requests_per_unit: 1}\n"
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	doc := "runtime: {root: '" + dir + "', subdirectory: rl}\n"
	if _, err := Load(strings.NewReader(doc), "x.yaml"); err == nil {
		t.Fatal("two runtime files of domain edge loaded without merge_domain_config")
	}
	cfg, err := Load(strings.NewReader(doc+"merge_domain_config: true\n"), "x.yaml")
	if err != nil {
		t.Fatalf("merged: %v", err)
	}
	if got := len(cfg.Rules.Rules("edge")); got != 2 {
		t.Errorf("merged domain edge has %d rules, want 2", got)
	}
}

// TestRuntimeHostileTree: symlink loops, a symlink to the root's parent,
// odd names and an oversized file neither hang nor crash the loader; the
// oversized file is an error naming it.
func TestRuntimeHostileTree(t *testing.T) {
	dir := t.TempDir()
	app := filepath.Join(dir, "rl", "config")
	writeRuntime(t, dir, map[string]string{"rl/config/ok.yaml": "ok", "rl/config/new\nline 'q' #.yaml": "odd"})
	for _, l := range [][2]string{{"self", filepath.Join(app, "self")}, {dir, filepath.Join(app, "up")}, {"missing", filepath.Join(app, "dangling")}} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	doc := "runtime: {root: '" + dir + "', subdirectory: rl}\n"
	cfg, err := Load(strings.NewReader(doc), "x.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if got := slices.Sorted(slices.Values(cfg.Rules.Domains())); !slices.Equal(got, []string{"odd", "ok"}) {
		t.Errorf("domains %v, want [odd ok]", got)
	}
	big := filepath.Join(app, "big.yaml")
	if err := os.WriteFile(big, make([]byte, MaxFileSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(strings.NewReader(doc), "x.yaml"); err == nil || !strings.Contains(err.Error(), "big.yaml") {
		t.Errorf("oversized file: got %v, want an error naming big.yaml", err)
	}
}
