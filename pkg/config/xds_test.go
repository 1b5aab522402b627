package config

import (
	"reflect"
	"strings"
	"testing"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
)

// xdsEvery is a RateLimitConfig that sets every field of the proto.
var xdsEvery = &rlsconfv3.RateLimitConfig{
	Name:   "edge-config",
	Domain: "edge",
	Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: "remote_address", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_SECOND, RequestsPerUnit: 10, Name: "per_ip"}, DetailedMetric: true},
		{Key: "path", Value: "/admin/*", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_HOUR, RequestsPerUnit: 0}, ShadowMode: true},
		{Key: "path", Value: "/health", RateLimit: &rlsconfv3.RateLimitPolicy{Unlimited: true}},
		{Key: "user", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: "plan", Value: "gold", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_DAY, RequestsPerUnit: 4294967295,
				Replaces: []*rlsconfv3.RateLimitReplace{{Name: "per_ip"}}}},
			{Key: "plan", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_MINUTE, RequestsPerUnit: 3}},
		}},
	},
}

// xdsEveryYAML is xdsEvery written as a rule file.
const xdsEveryYAML = `
domain: edge
descriptors:
  - key: remote_address
    detailed_metric: true
    rate_limit: {unit: second, requests_per_unit: 10, name: per_ip}
  - key: path
    value: /admin/*
    shadow_mode: true
    rate_limit: {unit: hour, requests_per_unit: 0}
  - key: path
    value: /health
    rate_limit: {unlimited: true}
  - key: user
    descriptors:
      - key: plan
        value: gold
        rate_limit: {unit: day, requests_per_unit: 4294967295, replaces: [{name: per_ip}]}
      - key: plan
        rate_limit: {unit: minute, requests_per_unit: 3}
`

func i64(n int64) *int64 { return &n }

func TestWithXDSRulesMapsEveryField(t *testing.T) {
	base := loadXDSServer(t, "")
	cfg, err := base.WithXDSRules([]*rlsconfv3.RateLimitConfig{xdsEvery})
	if err != nil {
		t.Fatal(err)
	}
	want := []Descriptor{
		{Key: "remote_address", RateLimit: &RateLimit{Unit: "second", RequestsPerUnit: i64(10), Name: "per_ip"}, DetailedMetric: true},
		{Key: "path", Value: "/admin/*", RateLimit: &RateLimit{Unit: "hour", RequestsPerUnit: i64(0)}, ShadowMode: true},
		{Key: "path", Value: "/health", RateLimit: &RateLimit{Unlimited: true}},
		{Key: "user", Descriptors: []Descriptor{
			{Key: "plan", Value: "gold", RateLimit: &RateLimit{Unit: "day", RequestsPerUnit: i64(4294967295), Replaces: []Replace{{Name: "per_ip"}}}},
			{Key: "plan", RateLimit: &RateLimit{Unit: "minute", RequestsPerUnit: i64(3)}},
		}},
	}
	if len(cfg.Domains) != 1 || cfg.Domains[0].Domain != "edge" || !reflect.DeepEqual(cfg.Domains[0].Descriptors, want) {
		t.Errorf("Domains: got %+v, want domain edge with %+v", cfg.Domains, want)
	}
	if base.Rules.HasDomain("edge") || len(base.Domains) != 0 {
		t.Error("WithXDSRules changed the config it was called on")
	}

	// The same rules as a rule file compile to the same rule set.
	file, err := LoadRules(strings.NewReader(xdsEveryYAML), "edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, wantRules := cfg.Rules.Rules("edge"), file.Rules("edge")
	if len(got) != len(wantRules) || len(got) != 5 {
		t.Fatalf("rules: got %d from xDS and %d from the file, want 5 each", len(got), len(wantRules))
	}
	for i := range got {
		g, w := *got[i], *wantRules[i]
		if !strings.HasPrefix(g.Source, `xds resource "edge-config"`) {
			t.Errorf("rule %s: Source %q, want it to name the xDS resource", g.Path, g.Source)
		}
		g.Source, w.Source = "", ""
		if !reflect.DeepEqual(g, w) {
			t.Errorf("rule %d:\n xDS  %+v\n file %+v", i, g, w)
		}
	}
}

func TestWithXDSRulesErrors(t *testing.T) {
	sec := func(n uint32) *rlsconfv3.RateLimitPolicy {
		return &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_SECOND, RequestsPerUnit: n}
	}
	tests := []struct {
		name    string
		server  string // more server file settings
		configs []*rlsconfv3.RateLimitConfig
		want    []string
	}{
		{name: "unit unknown", configs: []*rlsconfv3.RateLimitConfig{{Name: "a", Domain: "a", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: "k", RateLimit: &rlsconfv3.RateLimitPolicy{RequestsPerUnit: 1}}}}},
			want: []string{`xds resource "a": descriptors[0].rate_limit.unit: missing: expected one of second`}},
		{name: "unlimited with a unit", configs: []*rlsconfv3.RateLimitConfig{{Name: "a", Domain: "a", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: "k", RateLimit: &rlsconfv3.RateLimitPolicy{Unlimited: true, Unit: rlsconfv3.RateLimitUnit_DAY}}}}},
			want: []string{`descriptors[0].rate_limit.unit: an unlimited rate_limit is never counted: remove unit (or unlimited)`}},
		{name: "duplicate key in a nested level", configs: []*rlsconfv3.RateLimitConfig{{Domain: "a", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: "k", Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "x", Value: "1", RateLimit: sec(1)}, {Key: "x", Value: "1", RateLimit: sec(2)}}}}}},
			want: []string{`xds resources[0]: descriptors[0].descriptors[1]: duplicate descriptor: key "x" with value "1" appears twice at this level (first at xds resources[0]: descriptors[0].descriptors[0])`}},
		{name: "duplicate domain across resources", configs: []*rlsconfv3.RateLimitConfig{
			{Name: "one", Domain: "a", Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "k", RateLimit: sec(1)}}},
			{Name: "two", Domain: "a", Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "k", RateLimit: sec(1)}}}},
			want: []string{`xds resource "two": domain: duplicate domain "a": already defined at xds resource "one": domain`}},
		{name: "missing key and domain", configs: []*rlsconfv3.RateLimitConfig{{Descriptors: []*rlsconfv3.RateLimitDescriptor{{RateLimit: sec(1)}}}},
			want: []string{"xds resources[0]: domain: missing", "xds resources[0]: descriptors[0].key: missing"}},
		{name: "too deep", configs: []*rlsconfv3.RateLimitConfig{nestedXDS(maxXDSDepth + 1)}, want: []string{"nest deeper than 64 levels"}},
		{name: "authz domain missing", server: authzEdge, configs: []*rlsconfv3.RateLimitConfig{{Domain: "other", Descriptors: []*rlsconfv3.RateLimitDescriptor{{Key: "k", RateLimit: sec(1)}}}},
			want: []string{`server file: authz.domain: no RateLimitConfig of the xDS update defines domain "edge"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadXDSServer(t, tc.server).WithXDSRules(tc.configs)
			if err == nil {
				t.Fatalf("WithXDSRules: got a config with domains %v, want an error", cfg.Rules.Domains())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("WithXDSRules error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
	if _, err := loadXDSServer(t, "").WithXDSRules([]*rlsconfv3.RateLimitConfig{nestedXDS(maxXDSDepth)}); err != nil {
		t.Errorf("descriptors %d levels deep: %v", maxXDSDepth, err)
	}
}

// TestXDSAuthz checks that a server file with rules_xds and authz loads
// before any rules exist, and that an update defining the domain applies.
func TestXDSAuthz(t *testing.T) {
	cfg := loadXDSServer(t, authzEdge)
	if cfg.Rules.HasDomain("edge") {
		t.Fatal("domain edge defined before any update")
	}
	got, err := cfg.WithXDSRules([]*rlsconfv3.RateLimitConfig{xdsEvery})
	if err != nil {
		t.Fatal(err)
	}
	if !got.Rules.HasDomain("edge") {
		t.Error("domain edge missing after the update")
	}
}

func TestXDSRedacted(t *testing.T) {
	cfg := loadXDSServer(t, "")
	cfg.RulesXDS.Headers = map[string]Secret{"authorization": "Bearer hunter2"}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"rules_xds:", "address: 127.0.0.1:18000", "node_id: default", "initial_backoff: 1s", "authorization: " + RedactedText} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Redacted:\n%s\nwant it to contain %q", out, want)
		}
	}
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("Redacted shows a header value:\n%s", out)
	}
}

const authzEdge = `
authz:
  domain: edge
  descriptors:
    - name: ip
      entries: [{key: remote_address, from: client_ip}]
`

func loadXDSServer(t *testing.T, more string) *Config {
	t.Helper()
	cfg, err := Load(strings.NewReader("rules_xds: {address: 127.0.0.1:18000}\n"+more), "server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rules.Domains()) != 0 {
		t.Fatalf("rules before any update: %v", cfg.Rules.Domains())
	}
	return cfg
}

func nestedXDS(depth int) *rlsconfv3.RateLimitConfig {
	d := &rlsconfv3.RateLimitDescriptor{Key: "k", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_SECOND, RequestsPerUnit: 1}}
	for range depth - 1 {
		d = &rlsconfv3.RateLimitDescriptor{Key: "k", Descriptors: []*rlsconfv3.RateLimitDescriptor{d}}
	}
	return &rlsconfv3.RateLimitConfig{Name: "deep", Domain: "deep", Descriptors: []*rlsconfv3.RateLimitDescriptor{d}}
}
