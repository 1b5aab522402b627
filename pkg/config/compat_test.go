package config

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// TestMergeDomainConfig: rule files of one domain merge only when enabled;
// a top-level descriptor in two of them is an error naming both places;
// replaces may name a rule of another file of the domain.
func TestMergeDomainConfig(t *testing.T) {
	tests := []struct {
		name, yaml string
		wantErr    []string // substrings, in order of the error lines
	}{
		{name: "off: a domain twice is an error", yaml: `
domains:
  - {domain: d, descriptors: [{key: a, rate_limit: {unit: minute, requests_per_unit: 1}}]}
  - {domain: d, descriptors: [{key: b, rate_limit: {unit: minute, requests_per_unit: 1}}]}
`, wantErr: []string{`m.yaml:4:14: domains[1].domain: duplicate domain "d": already defined at m.yaml:3:14; merge the two rule files, or set merge_domain_config: true`}},
		{name: "on: merged", yaml: `
merge_domain_config: true
domains:
  - {domain: d, descriptors: [{key: a, rate_limit: {name: a, unit: minute, requests_per_unit: 1, replaces: [{name: b}]}}]}
  - {domain: d, descriptors: [{key: b, rate_limit: {name: b, unit: minute, requests_per_unit: 1}}]}
`},
		{name: "on: a top-level descriptor twice", yaml: `
merge_domain_config: true
domains:
  - {domain: d, descriptors: [{key: a, value: x, rate_limit: {unit: minute, requests_per_unit: 1}}]}
  - domain: d
    descriptors:
      - {key: b, rate_limit: {unit: minute, requests_per_unit: 1}}
      - {key: a, value: x, rate_limit: {unit: hour, requests_per_unit: 1}}
`, wantErr: []string{`m.yaml:8:9: domains[1].descriptors[1]: duplicate descriptor: key "a" with value "x" is also defined at m.yaml:4:31; merge_domain_config merges the rule files of domain "d"`}},
		{name: "on: rules_dir", yaml: "merge_domain_config: true\nrules_dir: testdata/mergerules\n",
			wantErr: []string{`testdata/mergerules/b.yaml:5:5: descriptors[1]: duplicate descriptor: key "a" without a value is also defined at testdata/mergerules/a.yaml:3:5`}},
		{name: "off: rules_dir", yaml: "rules_dir: testdata/mergerules\n",
			wantErr: []string{`testdata/mergerules/b.yaml:1:9: domain: duplicate domain "shared": already defined at testdata/mergerules/a.yaml:1:9`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load(strings.NewReader(tc.yaml), "m.yaml")
			if len(tc.wantErr) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range []string{"a", "b"} {
					if _, ok := cfg.Rules.Match("d", descriptor.Descriptor{{Key: k, Value: "v"}}); !ok {
						t.Errorf("merged domain lacks %s", k)
					}
				}
				return
			}
			if err == nil {
				t.Fatal("loaded")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tc.wantErr) {
				t.Fatalf("got %d errors, want %d:\n%v", len(lines), len(tc.wantErr), err)
			}
			for i, w := range tc.wantErr {
				if !strings.Contains(lines[i], w) {
					t.Errorf("error %d:\n%s\nwant it to contain:\n%s", i, lines[i], w)
				}
			}
		})
	}
}

// TestDescriptorMetadataAndQuota: metadata is any YAML mapping, kept as
// the protobuf Struct dynamic_metadata returns; quota_mode reaches the rule.
func TestDescriptorMetadataAndQuota(t *testing.T) {
	cfg, err := Load(strings.NewReader(`
domains:
  - domain: d
    descriptors:
      - key: a
        quota_mode: true
        metadata:
          s: text
          n: 3
          f: 2.5
          b: true
          z: null
          l: [1, two, {three: 3}]
          m: {deep: {er: "yes"}}
          q: "007"
        rate_limit: {unit: minute, requests_per_unit: 1}
      - key: b
        rate_limit: {unit: minute, requests_per_unit: 1}
`), "m.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, ok := cfg.Rules.Match("d", descriptor.Descriptor{{Key: "a", Value: "v"}})
	if !ok || !r.Quota {
		t.Fatalf("rule a: %v, quota %v", ok, ok && r.Quota)
	}
	want, err := structpb.NewStruct(map[string]any{
		"s": "text", "n": 3, "f": 2.5, "b": true, "z": nil,
		"l": []any{1, "two", map[string]any{"three": 3}},
		"m": map[string]any{"deep": map[string]any{"er": "yes"}},
		"q": "007",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(r.Metadata, want) {
		t.Errorf("metadata\n%v\nwant\n%v", r.Metadata, want)
	}
	if b, _ := cfg.Rules.Match("d", descriptor.Descriptor{{Key: "b", Value: "v"}}); b.Quota || b.Metadata != nil {
		t.Errorf("rule b: quota %v, metadata %v", b.Quota, b.Metadata)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	again, err := Load(strings.NewReader(string(out)), "again.yaml")
	if err != nil {
		t.Fatalf("the rendered config does not load: %v\n%s", err, out)
	}
	r2, _ := again.Rules.Match("d", descriptor.Descriptor{{Key: "a", Value: "v"}})
	if !proto.Equal(r2.Metadata, want) || !r2.Quota {
		t.Errorf("after rendering: metadata %v quota %v", r2.Metadata, r2.Quota)
	}
}

func TestDescriptorMetadataErrors(t *testing.T) {
	deep := "x"
	for range maxMetadataDepth + 1 {
		deep = "{a: " + deep + "}"
	}
	tests := []struct{ name, metadata, want string }{
		{"not a mapping", "[1, 2]", `domains[0].descriptors[0].metadata: expected a mapping of metadata (e.g. metadata: {team: search}), got a list`},
		{"a scalar", "yes", `got "yes"`},
		{"not a finite number", "{x: .nan}", `domains[0].descriptors[0].metadata.x: expected a finite number (metadata is JSON), got ".nan"; quote it to send a string`},
		{"infinite", "{x: [.inf]}", `metadata.x[0]: expected a finite number`},
		{"a key that is not a string", "{[a]: 1}", `expected a string key, got a list`},
		{"a repeated key", "{a: 1, a: 2}", `metadata.a: repeated key`},
		{"too deep", deep, `metadata nested deeper than 32 levels: flatten it`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			yaml := "domains: [{domain: d, descriptors: [{key: k, rate_limit: {unit: minute, requests_per_unit: 1}, metadata: " + tc.metadata + "}]}]\n"
			_, err := Load(strings.NewReader(yaml), "m.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "m.yaml:1:") {
				t.Errorf("error not placed: %v", err)
			}
		})
	}
}
