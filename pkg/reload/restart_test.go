package reload

import (
	"slices"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/config"
)

func TestRestartRequired(t *testing.T) {
	const base = `
grpc_addr: 127.0.0.1:8081
domains:
  - domain: edge
    descriptors:
      - key: k
        rate_limit: {unit: minute, requests_per_unit: 1}
`
	tests := []struct {
		name string
		// change is YAML appended to base for the new config.
		change string
		want   []string
	}{
		{name: "nothing", change: "", want: nil},
		{name: "live settings", change: `
default_algorithm: token_bucket
count_mode: if_all_allowed
near_limit_ratio: 0.5
response_headers: {enabled: true}
over_limit_body: true
failure_mode: open
domain_failure_modes: {edge: closed}
log: {level: debug}
limits: {max_descriptors: 3, max_entries: 2, max_key_length: 10, max_value_length: 10, max_hits_addend: 5}
upstream_headers: {enabled: true, limit_header: X-Limit}
shadow_mode: true
quota_mode: true
response_dynamic_metadata: true
merge_domain_config: true
`, want: nil},
		{name: "listen address", change: "http_addr: 127.0.0.1:9999\n", want: []string{"http_addr"}},
		{name: "backends", change: "backends: [{type: memory, max_keys: 10}]\n", want: []string{"backends"}},
		{name: "a secret", change: "backends: [{type: redis, url: 'redis://:other@127.0.0.1:6379'}]\n", want: []string{"backends"}},
		{name: "breaker and health", change: "breaker: {open_for: 1s}\nhealth_check: {interval: 2s}\nreplicas: 3\nreadiness: all\n",
			want: []string{"breaker", "health_check", "readiness", "replicas"}},
		{name: "log format", change: "log: {format: json, level: warn}\n", want: []string{"log.format"}},
		{name: "message size", change: "limits: {max_message_bytes: 65536, max_entries: 3}\n", want: []string{"limits.max_message_bytes"}},
		{name: "grpc", change: "grpc: {keepalive_time: 1m}\n", want: []string{"grpc"}},
		{name: "tracing", change: "tracing: {enabled: true, sampling_ratio: 0.5}\n", want: []string{"tracing"}},
		{name: "tracing header secret", change: "tracing: {headers: {authorization: other}}\n", want: []string{"tracing"}},
		{name: "authz turned on", change: `
authz:
  domain: edge
  descriptors:
    - name: k
      entries: [{key: k, from: client_ip}]
`, want: []string{"authz"}},
	}
	oldBackends := "backends: [{type: redis, url: 'redis://:one@127.0.0.1:6379'}]\n"
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			oldYAML := base
			if tc.name == "a secret" {
				oldYAML += oldBackends
			}
			old := loadString(t, oldYAML)
			new := loadString(t, base+tc.change)
			got := RestartRequired(old, new)
			if !slices.Equal(got, tc.want) {
				t.Errorf("RestartRequired: got %q, want %q", got, tc.want)
			}
			if back := RestartRequired(new, old); !slices.Equal(back, tc.want) {
				t.Errorf("RestartRequired (reversed): got %q, want %q", back, tc.want)
			}
		})
	}
	if got := RestartRequired(nil, loadString(t, base)); got != nil {
		t.Errorf("RestartRequired(nil, cfg): got %q, want nil", got)
	}
}

// TestRestartRequiredAuthzLive checks that a change inside an authz section
// applies live.
func TestRestartRequiredAuthzLive(t *testing.T) {
	authz := func(key string) string {
		return `
domains:
  - domain: edge
    descriptors:
      - key: a
        rate_limit: {unit: minute, requests_per_unit: 1}
      - key: b
        rate_limit: {unit: minute, requests_per_unit: 1}
authz:
  domain: edge
  descriptors:
    - name: n
      entries: [{key: ` + key + `, from: client_ip}]
`
	}
	if got := RestartRequired(loadString(t, authz("a")), loadString(t, authz("b"))); got != nil {
		t.Errorf("RestartRequired: got %q, want nil", got)
	}
}

func loadString(t *testing.T, s string) *config.Config {
	t.Helper()
	cfg, err := config.Load(strings.NewReader(s), "x.yaml")
	if err != nil {
		t.Fatalf("load:\n%s\n%v", s, err)
	}
	return cfg
}

// TestRestartRequiredRulesXDS checks that the xDS subscription's settings
// need a restart: the client is built once at start.
func TestRestartRequiredRulesXDS(t *testing.T) {
	old := loadString(t, "rules_xds: {address: 127.0.0.1:18000}\n")
	for _, change := range []string{
		"rules_xds: {address: 127.0.0.1:18001}\n",
		"rules_xds: {address: 127.0.0.1:18000, node_id: other}\n",
		"rules_xds: {address: 127.0.0.1:18000, max_backoff: 1m}\n",
	} {
		if got := RestartRequired(old, loadString(t, change)); !slices.Equal(got, []string{"rules_xds"}) {
			t.Errorf("RestartRequired for %q: got %q, want [rules_xds]", change, got)
		}
	}
	if got := RestartRequired(old, loadString(t, "rules_xds: {address: 127.0.0.1:18000}\nlog: {level: debug}\n")); got != nil {
		t.Errorf("RestartRequired with rules_xds unchanged: got %q, want nil", got)
	}
}
