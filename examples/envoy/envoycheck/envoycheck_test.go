package envoycheck

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
)

// bootstrap wraps a virtual host (YAML, indented for its place) and http
// filters into a complete bootstrap with an "extauthz" gRPC cluster.
func bootstrap(vhost, filterExtra string) string {
	return `
static_resources:
  listeners:
  - name: ingress
    address: {socket_address: {address: 0.0.0.0, port_value: 10000}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          route_config:
            virtual_hosts:
` + vhost + `
          http_filters:
          - name: envoy.filters.http.ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
              domain: edge
              failure_mode_deny: false
              rate_limit_service:
                transport_api_version: V3
                grpc_service: {envoy_grpc: {cluster_name: extauthz}}
` + filterExtra + `
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: extauthz
    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: extauthz
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8081}}}}]}]
  - name: app
    type: STATIC
    load_assignment:
      cluster_name: app
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8000}}}}]}]
`
}

const simpleVHost = `
            - name: web
              domains: ["*"]
              rate_limits:
              - actions: [{remote_address: {}}]
              - actions: [{request_headers: {header_name: x-api-key, descriptor_key: api_key}}]
              routes:
              - match: {prefix: /}
                route: {cluster: app}
`

func TestParseBootstrap(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string // "" for success
	}{
		{name: "valid", yaml: bootstrap(simpleVHost, "")},
		{
			name:    "unknown field",
			yaml:    bootstrap(simpleVHost, "              failure_mode_denny: true\n"),
			wantErr: "failure_mode_denny",
		},
		{
			name:    "unresolvable typed_config",
			yaml:    strings.Replace(bootstrap(simpleVHost, ""), "filters.http.router.v3.Router", "filters.http.router.v3.Routr", 1),
			wantErr: "Routr",
		},
		{
			// PGV rule inside an Any: RateLimit.domain has min_len 1.
			name:    "invalid message inside typed_config",
			yaml:    strings.Replace(bootstrap(simpleVHost, ""), "domain: edge", "domain: \"\"", 1),
			wantErr: "Domain",
		},
		{
			// PGV rule inside a route: header_name must be a valid header.
			name:    "invalid action",
			yaml:    bootstrap(strings.Replace(simpleVHost, "header_name: x-api-key", `header_name: ""`, 1), ""),
			wantErr: "HeaderName",
		},
		{
			name:    "deprecated field",
			yaml:    bootstrap(strings.Replace(simpleVHost, "route: {cluster: app}", "route: {cluster: app, include_vh_rate_limits: true}", 1), ""),
			wantErr: "include_vh_rate_limits: field is deprecated",
		},
		{name: "not yaml", yaml: "a: [", wantErr: "yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseBootstrap([]byte(tc.yaml))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("got error %v, want nil", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("got nil error, want one containing %q", tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func mustSetup(t *testing.T, y string) *Setup {
	t.Helper()
	b, err := ParseBootstrap([]byte(y))
	if err != nil {
		t.Fatal(err)
	}
	s, err := RateLimits(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := Lint(b, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRateLimitsPrecedence(t *testing.T) {
	tests := []struct {
		name          string
		vhost, filter string
		// wantPolicies: "source suffix @ route suffix" for every policy.
		wantPolicies  []string
		wantUnapplied []string
	}{
		{
			name:  "virtual host limits apply to every route",
			vhost: simpleVHost,
			wantPolicies: []string{
				`vhost "web" rate_limits[0] @ vhost "web" routes[0]`,
				`vhost "web" rate_limits[1] @ vhost "web" routes[0]`,
			},
		},
		{
			name: "route limits override the virtual host's by default",
			vhost: `
            - name: web
              domains: ["*"]
              rate_limits: [{actions: [{remote_address: {}}]}]
              routes:
              - match: {prefix: /login}
                route: {cluster: app, rate_limits: [{actions: [{generic_key: {descriptor_value: login}}]}]}
              - match: {prefix: /}
                route: {cluster: app}
`,
			wantPolicies: []string{
				`vhost "web" routes[0] rate_limits[0] @ vhost "web" routes[0]`,
				`vhost "web" rate_limits[0] @ vhost "web" routes[1]`,
			},
		},
		{
			name: "vh_rate_limits INCLUDE keeps the virtual host's",
			vhost: `
            - name: web
              domains: ["*"]
              rate_limits: [{actions: [{remote_address: {}}]}]
              routes:
              - match: {prefix: /login}
                route: {cluster: app, rate_limits: [{actions: [{generic_key: {descriptor_value: login}}]}]}
                typed_per_filter_config:
                  envoy.filters.http.ratelimit:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
                    vh_rate_limits: INCLUDE
`,
			wantPolicies: []string{
				`vhost "web" routes[0] rate_limits[0] @ vhost "web" routes[0]`,
				`vhost "web" rate_limits[0] @ vhost "web" routes[0]`,
			},
		},
		{
			name: "another stage and a direct_response host apply nowhere",
			vhost: `
            - name: web
              domains: ["a.example"]
              routes:
              - match: {prefix: /}
                route: {cluster: app, rate_limits: [{stage: 1, actions: [{remote_address: {}}]}, {actions: [{remote_address: {}}]}]}
            - name: static
              domains: ["*"]
              rate_limits: [{actions: [{remote_address: {}}]}]
              routes:
              - match: {prefix: /}
                direct_response: {status: 200}
`,
			wantPolicies:  []string{`vhost "web" routes[0] rate_limits[1] @ vhost "web" routes[0]`},
			wantUnapplied: []string{`vhost "web" routes[0] rate_limits[0]`, `vhost "static" rate_limits[0]`},
		},
		{
			name:  "filter-level rate_limits replace route and virtual host limits",
			vhost: simpleVHost,
			filter: `              rate_limits: [{actions: [{generic_key: {descriptor_value: all}}]}]
`,
			wantPolicies:  []string{`http_filters[0] "envoy.filters.http.ratelimit" rate_limits[0] @ vhost "web" routes[0]`},
			wantUnapplied: []string{`vhost "web" rate_limits[0]`, `vhost "web" rate_limits[1]`},
		},
		{
			name: "per-route rate_limits win, under a typo'd filter name apply nowhere",
			vhost: `
            - name: web
              domains: ["*"]
              rate_limits: [{actions: [{remote_address: {}}]}]
              routes:
              - match: {prefix: /a}
                route: {cluster: app}
                typed_per_filter_config:
                  envoy.filters.http.ratelimit:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
                    domain: other
                    rate_limits: [{actions: [{generic_key: {descriptor_value: a}}]}]
              - match: {prefix: /b}
                route: {cluster: app}
                typed_per_filter_config:
                  envoy.filters.http.ratelimits:
                    "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimitPerRoute
                    rate_limits: [{actions: [{generic_key: {descriptor_value: b}}]}]
`,
			wantPolicies: []string{
				`vhost "web" routes[0] typed_per_filter_config["envoy.filters.http.ratelimit"] rate_limits[0] @ vhost "web" routes[0]`,
				`vhost "web" rate_limits[0] @ vhost "web" routes[1]`,
			},
			wantUnapplied: []string{`vhost "web" routes[1] typed_per_filter_config["envoy.filters.http.ratelimits"] rate_limits[0]`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSetup(t, bootstrap(tc.vhost, tc.filter))
			var got, unapplied []string
			for _, p := range s.Policies {
				got = append(got, local(p.Source)+" @ "+local(p.Route))
			}
			for _, u := range s.Unapplied {
				unapplied = append(unapplied, local(u))
			}
			if !slices.Equal(got, tc.wantPolicies) {
				t.Errorf("got policies\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.wantPolicies, "\n"))
			}
			if !slices.Equal(unapplied, tc.wantUnapplied) {
				t.Errorf("got unapplied %q, want %q", unapplied, tc.wantUnapplied)
			}
		})
	}
	t.Run("per-route domain", func(t *testing.T) {
		s := mustSetup(t, bootstrap(tests[5].vhost, ""))
		if got := s.Policies[0].Domain; got != "other" {
			t.Errorf("got domain %q, want %q", got, "other")
		}
	})
}

// local drops the listener from a location.
func local(where string) string { return strings.TrimPrefix(where, `listener "ingress" `) }

func TestDescriptor(t *testing.T) {
	const vhost = `
            - name: web
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route:
                  cluster: app
                  rate_limits:
                  - actions: [{source_cluster: {}}, {destination_cluster: {}}]
                  - actions: [{request_headers: {header_name: x-api-key, descriptor_key: api_key}}, {remote_address: {}}]
                  - actions: [{request_headers: {header_name: x-api-key, descriptor_key: api_key, skip_if_absent: true}}, {remote_address: {}}]
                  - actions: [{masked_remote_address: {v4_prefix_mask_len: 24, v6_prefix_mask_len: 64}}]
                  - actions: [{generic_key: {descriptor_value: g}}, {generic_key: {descriptor_key: k, descriptor_value: v}}]
                  - actions: [{header_value_match: {descriptor_value: post, headers: [{name: ":method", string_match: {exact: POST}}]}}]
                  - actions: [{header_value_match: {descriptor_value: not-post, expect_match: false, headers: [{name: ":method", string_match: {exact: POST}}]}}]
                  - actions: [{header_value_match: {descriptor_key: bot, descriptor_value: "yes", headers: [{name: user-agent, string_match: {contains: bot, ignore_case: true}}]}}]
                  - actions: [{header_value_match: {descriptor_value: no-ua, headers: [{name: user-agent, present_match: true, invert_match: true}]}}]
                  - actions: [{query_parameters: {query_parameter_name: page, descriptor_key: page}}]
                  - actions: [{query_parameter_value_match: {descriptor_value: debug, query_parameters: [{name: debug, present_match: true}]}}]
                  - actions: [{metadata: {descriptor_key: tenant, metadata_key: {key: envoy.filters.http.ext_authz, path: [{key: tenant}]}, default_value: none}}]
`
	s := mustSetup(t, bootstrap(vhost, ""))
	if len(s.Policies) != 12 {
		t.Fatalf("got %d policies, want 12", len(s.Policies))
	}
	tests := []struct {
		name string
		req  Request
		want []string // per policy: Descriptor.String(), or "-" for none
	}{
		{
			name: "GET with nothing",
			req:  Request{RemoteAddr: netip.MustParseAddr("192.0.2.77"), Method: "GET", Path: "/", SourceCluster: "edge"},
			want: []string{
				"(source_cluster=edge, destination_cluster=app)",
				"-",
				"(remote_address=192.0.2.77)",
				"(masked_remote_address=192.0.2.0/24)",
				"(generic_key=g, k=v)",
				"-",
				"(header_match=not-post)",
				"-",
				"(header_match=no-ua)",
				"-",
				"-",
				"(tenant=none)",
			},
		},
		{
			name: "POST from a bot over IPv6 with a key, a query and metadata",
			req: Request{
				RemoteAddr: netip.MustParseAddr("2001:db8:1:2:3::9"), Method: "POST", Path: "/x?page=2&debug",
				Headers:  map[string]string{"x-api-key": "k1", "user-agent": "SomeBOT/1.0"},
				Metadata: map[string]map[string]any{"envoy.filters.http.ext_authz": {"tenant": "t1"}},
			},
			want: []string{
				"(source_cluster=, destination_cluster=app)",
				"(api_key=k1, remote_address=2001:db8:1:2:3::9)",
				"(api_key=k1, remote_address=2001:db8:1:2:3::9)",
				"(masked_remote_address=2001:db8:1:2::/64)",
				"(generic_key=g, k=v)",
				"(header_match=post)",
				"-",
				"(bot=yes)",
				"-",
				"(page=2)",
				"(query_match=debug)",
				"(tenant=t1)",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for i, p := range s.Policies {
				d, ok, err := Descriptor(p.RateLimit, p.Cluster, &tc.req)
				if err != nil {
					t.Fatalf("policy %d: %v", i, err)
				}
				got := "-"
				if ok {
					got = d.String()
				}
				if got != tc.want[i] {
					t.Errorf("policy %d (%s): got %s, want %s", i, p.Source, got, tc.want[i])
				}
			}
		})
	}
}

func TestDescriptorUnsupported(t *testing.T) {
	vhost := `
            - name: web
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route:
                  cluster: app
                  rate_limits:
                  - actions: [{metadata: {descriptor_key: x, source: ROUTE_ENTRY, metadata_key: {key: a, path: [{key: b}]}}}]
`
	s := mustSetup(t, bootstrap(vhost, ""))
	_, _, err := Descriptor(s.Policies[0].RateLimit, "app", &Request{})
	if !errors.Is(err, ErrUnsupported) {
		t.Fatalf("got error %v, want ErrUnsupported", err)
	}
}

func mustRules(t *testing.T, domains ...descriptor.Domain) *descriptor.Set {
	t.Helper()
	s, err := descriptor.NewSet(domains, descriptor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func perMinute(name string, n int64) *descriptor.RateLimit {
	return &descriptor.RateLimit{Name: name, Unit: descriptor.UnitMinute, RequestsPerUnit: n}
}

func TestCheckRules(t *testing.T) {
	// A rule file's api_key value loads canonical (pkg/config); built
	// here, it is written so.
	full := mustRules(t, descriptor.Domain{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "remote_address", RateLimit: perMinute("ip", 100)},
		{Key: "api_key", Value: extract.HashValue("gold"), RateLimit: perMinute("gold", 1000)},
		{Key: "api_key", RateLimit: perMinute("key", 10)},
	}})
	noKeyDefault := mustRules(t, descriptor.Domain{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "remote_address", RateLimit: perMinute("ip", 100)},
		{Key: "api_key", Value: extract.HashValue("gold"), RateLimit: perMinute("gold", 1000)},
	}})
	otherDomain := mustRules(t, descriptor.Domain{Name: "web", Descriptors: []descriptor.Node{
		{Key: "remote_address", RateLimit: perMinute("ip", 100)},
	}})
	gold := &Request{Name: "gold", RemoteAddr: netip.MustParseAddr("192.0.2.1"), Method: "GET", Path: "/",
		Headers: map[string]string{"x-api-key": "gold"}}

	tests := []struct {
		name      string
		vhost     string
		rules     *descriptor.Set
		reqs      []*Request
		wantErrs  []string
		wantRules map[string]string // "request descriptor" → rule name
	}{
		{
			name:  "every descriptor matches",
			vhost: simpleVHost,
			rules: full,
			reqs:  []*Request{gold},
			wantRules: map[string]string{
				"gold (remote_address=192.0.2.1)":           "ip",
				"gold (api_key=gold)":                       "gold",
				"synthesized (remote_address=203.0.113.10)": "ip",
				"synthesized (api_key=sample-api_key)":      "key",
			},
		},
		{
			name:     "a key without a catch-all rule",
			vhost:    simpleVHost,
			rules:    noKeyDefault,
			reqs:     []*Request{gold},
			wantErrs: []string{`request "synthesized": descriptor (api_key=sample-api_key) matches no rule of domain "edge"`},
		},
		{
			name:     "unknown domain",
			vhost:    simpleVHost,
			rules:    otherDomain,
			wantErrs: []string{`domain "edge" has no rules`},
		},
		{
			name: "an entry shadowed by an earlier route is never sent",
			vhost: `
            - name: web
              domains: ["*"]
              routes:
              - match: {prefix: /}
                route: {cluster: app}
              - match: {prefix: /admin}
                route: {cluster: app, rate_limits: [{actions: [{remote_address: {}}]}]}
`,
			rules:    full,
			wantErrs: []string{`no request makes Envoy send its descriptor`, `is not routed to`},
		},
		{
			name: "a nested rule needs the whole descriptor",
			vhost: `
            - name: web
              domains: ["*"]
              rate_limits: [{actions: [{remote_address: {}}, {request_headers: {header_name: x-api-key, descriptor_key: api_key}}]}]
              routes:
              - match: {prefix: /}
                route: {cluster: app}
`,
			rules:    full,
			wantErrs: []string{`descriptor (remote_address=203.0.113.10, api_key=sample-api_key) matches no rule`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustSetup(t, bootstrap(tc.vhost, ""))
			matches, err := CheckRules(s, tc.rules, tc.reqs)
			for _, m := range matches {
				t.Log(m)
			}
			if len(tc.wantErrs) == 0 && err != nil {
				t.Fatalf("got error %v, want nil", err)
			}
			for _, w := range tc.wantErrs {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("got error %v, want one containing %q", err, w)
				}
			}
			for _, m := range matches {
				if m.Descriptor == nil {
					continue
				}
				key := m.Request + " " + m.Descriptor.String()
				want, ok := tc.wantRules[key]
				if !ok {
					continue
				}
				got := ""
				if m.Rule != nil {
					got = m.Rule.Name
				}
				if got != want {
					t.Errorf("%s: got rule %q, want %q", key, got, want)
				}
			}
		})
	}
}

func TestLint(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(string) string
		wantErr string
	}{
		{
			name: "missing grpc cluster",
			edit: func(s string) string {
				return strings.Replace(s, "cluster_name: extauthz", "cluster_name: ratelimit", 1)
			},
			wantErr: `grpc cluster "ratelimit" is not a static cluster`,
		},
		{
			name: "grpc cluster without HTTP/2",
			edit: func(s string) string {
				return strings.Replace(s, "explicit_http_config: {http2_protocol_options: {}}", "explicit_http_config: {http_protocol_options: {}}", 1)
			},
			wantErr: `does not enable HTTP/2`,
		},
		{
			name:    "route to a missing cluster",
			edit:    func(s string) string { return strings.Replace(s, "route: {cluster: app}", "route: {cluster: ap}", 1) },
			wantErr: `cluster "ap" is not a static cluster`,
		},
		{
			name: "router not last",
			edit: func(s string) string {
				i := strings.Index(s, "          - name: envoy.filters.http.ratelimit")
				j := strings.Index(s, "          - name: envoy.filters.http.router")
				k := strings.Index(s, "  clusters:")
				return s[:i] + s[j:k] + s[i:j] + s[k:]
			},
			wantErr: "the last http filter must be envoy.filters.http.router",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseBootstrap([]byte(tc.edit(bootstrap(simpleVHost, ""))))
			if err != nil {
				t.Fatal(err)
			}
			s, err := RateLimits(b)
			if err != nil {
				t.Fatal(err)
			}
			if err := Lint(b, s); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
