package helm_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// opaque values are documented as a whole: their content is free-form
// Kubernetes or extauthz configuration.
var opaque = map[string]bool{
	"podSecurityContext": true, "securityContext": true, "resources": true,
	"livenessProbe": true, "readinessProbe": true, "config": true,
	"envoy.resources": true, "envoy.securityContext": true,
}

// TestReadmeListsEveryValue checks that the chart README's table has a row
// for every value in values.yaml, and no row for a value that is gone.
func TestReadmeListsEveryValue(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			path := prefix + k
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !opaque[path] {
				walk(path+".", sub)
				continue
			}
			keys = append(keys, path)
		}
	}
	walk("", values)

	readme, err := os.ReadFile(filepath.Join(chartDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for line := range strings.SplitSeq(string(readme), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `"); ok {
			if key, _, ok := strings.Cut(rest, "`"); ok {
				rows[key] = true
			}
		}
	}
	for _, k := range keys {
		if !rows[k] {
			t.Errorf("README.md has no row for value %s", k)
		}
		delete(rows, k)
	}
	for k := range rows {
		t.Errorf("README.md documents %s, which values.yaml does not have", k)
	}
}
