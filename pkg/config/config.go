// Package config loads, validates and compiles extauthz's server file and
// its envoyproxy/ratelimit-format rule files.
package config

import (
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/pkg/adminauth"
	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/backends/pgstore"
	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/insight"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/tracing"
	"github.com/extauthz/extauthz/pkg/xdsrules"
)

// Config is a loaded, validated server file. Its zero values are the
// documented defaults; Load fills them in, so a loaded Config states every
// setting explicitly.
//
//	grpc_addr: 0.0.0.0:8081
//	http_addr: 0.0.0.0:8080
//	default_algorithm: fixed_window    # fixed_window | sliding_window | token_bucket
//	count_mode: all                    # all | if_all_allowed
//	near_limit_ratio: 0.8
//	response_headers: {enabled: false, limit_header: X-RateLimit-Limit, ...}
//	over_limit_body: false
//	upstream_headers: {enabled: false, limit_header: X-RateLimit-Limit, ...}
//	shadow_mode: false                 # every OVER_LIMIT answered OK (counted)
//	quota_mode: false                  # every descriptor in quota mode
//	response_dynamic_metadata: false   # RateLimitResponse.dynamic_metadata
//	merge_domain_config: false         # rule files of one domain merged
//	backends: [{type: memory, max_keys: 1000000}]
//	failure_mode: envoy                # and the rest of chain.Settings
//	domains: [...]                     # inline rule files
//	rules_dir: ./rules                 # and/or a directory of rule files
//	rules_xds: {address: ...}          # or: rules from an xDS management server
//	admin: {auth: {token_file: ...}}   # secures http_addr (adminauth.Settings)
//	tracing: {enabled: true, ...}      # OpenTelemetry spans over OTLP (tracing.Settings)
type Config struct {
	// File is the path the config was loaded from ("" for Load).
	File string `yaml:"-"`
	// GRPCAddr and HTTPAddr are the listen addresses (defaults
	// 0.0.0.0:8081 and 0.0.0.0:8080).
	GRPCAddr string `yaml:"grpc_addr"`
	HTTPAddr string `yaml:"http_addr"`
	// DefaultAlgorithm counts the rules that name no algorithm, and
	// per-descriptor limit overrides (default fixed_window, which behaves
	// exactly as envoyproxy/ratelimit).
	DefaultAlgorithm limiter.Algorithm `yaml:"default_algorithm"`
	// CountMode is "all" (default, limiter.CountAll: every matched
	// descriptor is counted even when another refuses the request, as in
	// envoyproxy/ratelimit) or "if_all_allowed" (limiter.CountIfAllAllowed).
	CountMode limiter.Mode `yaml:"count_mode"`
	// NearLimitRatio: a decision is reported as near_limit in metrics when
	// used/limit >= NearLimitRatio (default 0.8; 0 < ratio <= 1).
	NearLimitRatio float64 `yaml:"near_limit_ratio"`
	// ResponseHeaders configures the X-RateLimit-* response headers
	// (owned by the server package).
	ResponseHeaders server.HeaderSettings `yaml:"response_headers"`
	// OverLimitBody adds a small JSON raw_body naming the refusing limit to
	// OVER_LIMIT responses (default false).
	OverLimitBody bool `yaml:"over_limit_body"`
	// UpstreamHeaders configures the limit/remaining/reset headers Envoy
	// adds to the request it forwards (the RateLimitService's
	// request_headers_to_add), the same headers response_headers builds
	// (server.HeaderSettings; default off).
	UpstreamHeaders server.HeaderSettings `yaml:"upstream_headers"`
	// Decisions holds shadow_mode, quota_mode and
	// response_dynamic_metadata, envoyproxy/ratelimit's SHADOW_MODE,
	// QUOTA_MODE and RESPONSE_DYNAMIC_METADATA (server.DecisionSettings);
	// its keys are top-level.
	Decisions server.DecisionSettings `yaml:",inline"`
	// MergeDomainConfig merges the rule files that define the same domain
	// into one tree (envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG; default
	// false: a domain defined twice is an error). A top-level descriptor
	// defined in two of them is still an error.
	MergeDomainConfig bool `yaml:"merge_domain_config"`
	// Backends is the ordered backend chain (default: one memory backend):
	// the default chain, named "default", that counts every rule no other
	// chain is chosen for.
	Backends []Backend `yaml:"backends"`
	// Chains are more named backend chains (chains.go), each an ordered
	// list like Backends with its own breakers and health checks. A rule
	// chooses one with rate_limit.chain, or through ChainsByUnit.
	Chains map[string][]Backend `yaml:"chains"`
	// ChainsByUnit names the chain of every rule of a unit (second ...
	// year) that names none itself, e.g. {month: durable}; also of Envoy's
	// per-descriptor limit overrides of that unit.
	ChainsByUnit map[string]string `yaml:"chains_by_unit"`
	// Failover holds failure_mode, domain_failure_modes, breaker,
	// health_check, readiness and replicas (chain.Settings); its keys are
	// top-level.
	Failover chain.Settings `yaml:",inline"`
	// Ops holds log, tls, limits and grpc (see ops.go); its keys are
	// top-level.
	Ops `yaml:",inline"`
	// Domains are inline rule files.
	Domains []Domain `yaml:"domains"`
	// RulesDir is a directory of rule files (*.yaml, *.yml; one domain
	// each; hidden files skipped), relative to the server file's directory.
	// It may be combined with Domains; a domain may be defined only once,
	// unless MergeDomainConfig.
	RulesDir string `yaml:"rules_dir"`
	// RulesXDS, when set, takes every domain from an xDS management
	// server (xdsrules.Settings; xds.go): domains and rules_dir must then
	// be empty, and Rules holds no domain until the first update
	// (WithXDSRules).
	RulesXDS *xdsrules.Settings `yaml:"rules_xds"`
	// Runtime reads rule files from envoyproxy/ratelimit's runtime
	// directory layout, with its reload behaviour (runtime.go); nil: off.
	Runtime *Runtime `yaml:"runtime"`
	// Authz configures the ext_authz Check API (authz.go); nil: not served.
	Authz *Authz `yaml:"authz"`
	// Admin secures the admin listener at http_addr: TLS, a bearer token
	// or client certificates (adminauth.Settings; default: plain HTTP,
	// open).
	Admin adminauth.Settings `yaml:"admin"`
	// Insight configures traffic insight (pkg/insight owns the settings
	// and their defaults, which are not filled in here so that an unset
	// section stays out of /config).
	Insight insight.Settings `yaml:"insight,omitempty"`
	// Tracing exports OpenTelemetry spans of the gRPC calls (pkg/tracing
	// owns the settings and their defaults; default: off).
	Tracing tracing.Settings `yaml:"tracing,omitempty"`

	// Rules is the compiled rule tree of every domain.
	Rules *descriptor.Set `yaml:"-"`
	// RuleFiles are the rule files read from RulesDir, in load order (for
	// reload watchers). RulesDirPath is RulesDir resolved ("" when unset).
	RuleFiles    []string `yaml:"-"`
	RulesDirPath string   `yaml:"-"`

	// dirDomains are the domains read from RulesDir and Runtime.
	dirDomains []Domain
	// baseDir is the directory relative paths are resolved against (the
	// server file's).
	baseDir string
}

// Defaults.
const (
	DefaultGRPCAddr = "0.0.0.0:8081"
	DefaultHTTPAddr = "0.0.0.0:8080"
)

// Backend is one entry of the backend chain. Type selects which of the
// inline settings apply: setting a field of another type is an error.
//
// To add a backend type, add its package's settings struct as one more
// inline field tagged `backend:"<type>"`, list the type in BackendTypes and
// call its Validate in Backend.validate.
type Backend struct {
	// Type is "memory", "redis" or "postgres".
	Type string `yaml:"type"`
	// Name identifies the backend in metrics, logs and the health table
	// (default: its type, then type#2, type#3 ... for more of one type);
	// unique across every chain.
	Name string `yaml:"name"`
	// Memory holds max_keys.
	Memory memstore.Options `yaml:",inline" backend:"memory"`
	// Redis holds the Redis settings (url, sentinel, cluster, tls, ...).
	Redis redisstore.Config `yaml:",inline" backend:"redis"`
	// Postgres holds the PostgreSQL settings (dsn, dsn_file, dsn_env,
	// schema, max_conns, ..., see pgstore.Settings).
	Postgres pgstore.Settings `yaml:",inline" backend:"postgres"`
	// Failover holds fair_share and call_timeout.
	Failover chain.BackendSettings `yaml:",inline"`
}

// BackendTypes lists the valid Backend.Type values.
var BackendTypes = []string{"memory", "redis", "postgres"}

// Domain is one rule file in envoyproxy/ratelimit's format, inline in
// Config.Domains or a file of Config.RulesDir.
type Domain struct {
	Domain      string       `yaml:"domain"`
	Descriptors []Descriptor `yaml:"descriptors"`
	// File is the file the domain was read from.
	File string `yaml:"-"`
	// pos is where the domain was defined.
	pos string
}

// Descriptor is one "descriptors" entry of a rule file.
type Descriptor struct {
	// Key is required; Value is optional and may contain '*' patterns.
	Key   string `yaml:"key"`
	Value string `yaml:"value"`
	// RateLimit is the node's rule; nil when the node only groups nested
	// descriptors.
	RateLimit      *RateLimit   `yaml:"rate_limit"`
	Descriptors    []Descriptor `yaml:"descriptors"`
	ShadowMode     bool         `yaml:"shadow_mode"`
	DetailedMetric bool         `yaml:"detailed_metric"`
	ValueToMetric  bool         `yaml:"value_to_metric"`
	ShareThreshold bool         `yaml:"share_threshold"`
	// QuotaMode is envoyproxy/ratelimit's quota_mode (descriptor.Rule.Quota).
	QuotaMode bool `yaml:"quota_mode"`
	// Metadata is any YAML mapping, returned in the RateLimitService's
	// dynamic_metadata when response_dynamic_metadata is on and the
	// descriptor passes (metadata.go); nil when unset.
	Metadata *structpb.Struct `yaml:"metadata"`
}

// RateLimit is a rule file's rate_limit block. Algorithm and Burst are
// extauthz's additions.
type RateLimit struct {
	// Unit is second, minute, hour, day, week, month or year (any case).
	Unit string `yaml:"unit"`
	// RequestsPerUnit is required unless Unlimited (nil when absent); 0
	// refuses every request.
	RequestsPerUnit *int64    `yaml:"requests_per_unit"`
	Unlimited       bool      `yaml:"unlimited"`
	Name            string    `yaml:"name"`
	Replaces        []Replace `yaml:"replaces"`
	// Algorithm is fixed_window, sliding_window or token_bucket; nil
	// means Config.DefaultAlgorithm.
	Algorithm *limiter.Algorithm `yaml:"algorithm"`
	// Burst is the token bucket capacity (default RequestsPerUnit); only
	// with algorithm token_bucket.
	Burst int64 `yaml:"burst"`
	// Tiering holds tier_key and tiers (authz.go).
	Tiering `yaml:",inline"`
	// Chain names the backend chain that counts this rule (an extauthz
	// addition; default: chains_by_unit's chain for the unit, else the
	// default chain, "default").
	Chain string `yaml:"chain"`
	// Lease lets replicas lease blocks of this rule's keys' quota from a
	// shared backend (an extauthz addition; limiter.Lease, pkg/lease); nil
	// never leases.
	Lease *limiter.Lease `yaml:"lease"`
}

// Replace is one entry of rate_limit.replaces.
type Replace struct {
	Name string `yaml:"name"`
}
