package config

import (
	"cmp"
	"fmt"

	"golang.org/x/net/http/httpguts"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// Authz is the authz: section: how the ext_authz Check API turns an HTTP
// request into rate-limit descriptors of one domain, and the API keys and
// tenants it knows. Absent, Check is not served.
//
//	authz:
//	  domain: edge                       # required; a domain of the rules
//	  max_value_bytes: 256               # longer values are hashed
//	  client_ip:                         # absent: the peer address
//	    trusted_hops: 1                  # or trusted_proxies: [10.0.0.0/8]
//	  api_key:
//	    sources: [{header: authorization, scheme: Bearer}, {header: x-api-key}, {query: api_key}]
//	    listed_only: false
//	    descriptor_key: api_key
//	  tenant:
//	    sources: [{header: x-tenant, trusted: true}, {host: listed}, {host: first_label}]  # trusted: a proxy sets it
//	    listed_only: false
//	    share_counters: false            # default: counters are per tenant
//	    descriptor_key: tenant
//	  tier: {header: x-plan, trusted: true} # only when no listed key or tenant has a tier; set by your proxy
//	  api_keys:
//	    - {id: acme-prod, key_sha256: <hex>, tier: pro, tenant: acme, expires: 2027-01-01T00:00:00Z,
//	       overrides: [{rule: per_key, unit: minute, requests_per_unit: 5000, expires: ...}]}
//	  tenants:
//	    - {name: acme, tier: enterprise, hosts: [api.acme.example], overrides: [...]}
//	  descriptors:
//	    - name: per_ip
//	      entries: [{from: client_ip, v4_mask: 24, v6_mask: 64}]
//	  upstream_headers: {tenant: x-tenant-id, tier: x-tier, api_key_id: x-api-key-id}
type Authz struct {
	// Settings are the extractor's: domain, max_value_bytes, client_ip,
	// api_key, tenant, tier, api_keys, tenants and descriptors (see
	// package extract).
	extract.Settings `yaml:",inline"`
	// UpstreamHeaders name the request headers that carry the resolved
	// tenant, tier and API key id to the upstream.
	UpstreamHeaders UpstreamHeaders `yaml:"upstream_headers"`

	extractor  *extract.Extractor
	identities *extract.Identities
}

// UpstreamHeaders name request headers set (overwriting any client copy,
// and removed when there is no value) to carry what Check resolved to the
// upstream. Empty names are not sent.
type UpstreamHeaders struct {
	Tenant   string `yaml:"tenant"`
	Tier     string `yaml:"tier"`
	APIKeyID string `yaml:"api_key_id"`
}

// Extractor returns the compiled extractor (nil before Load compiled it).
func (a *Authz) Extractor() *extract.Extractor {
	if a == nil {
		return nil
	}
	return a.extractor
}

// Identities returns the compiled API keys and tenants (nil when none).
func (a *Authz) Identities() *extract.Identities {
	if a == nil {
		return nil
	}
	return a.identities
}

// compileAuthz checks and compiles cfg.Authz, whose override rule names and
// domain must exist in domains (the compiled rule files; with rules_xds,
// those of each update, checked by WithXDSRules). Load calls it before
// building the rule Set, which takes ruleIdentities.
func (cfg *Config) compileAuthz(c *checker, domains []descriptor.Domain) {
	a := cfg.Authz
	if a == nil {
		return
	}
	a.compile(c, "authz")
	if cfg.RulesXDS == nil {
		cfg.checkAuthzRules(c, domains)
	}
}

// checkAuthzRules checks that domains define the authz section's domain
// and the rules its overrides name (at load, or at each xDS update).
func (cfg *Config) checkAuthzRules(c *checker, domains []descriptor.Domain) {
	a := cfg.Authz
	if a == nil || a.Domain == "" {
		return
	}
	names := make(map[string]bool)
	known := false
	for i := range domains {
		collectRuleNames(domains[i].Descriptors, names)
		known = known || domains[i].Name == a.Domain
	}
	switch {
	case known:
	case cfg.RulesXDS != nil:
		c.errorf("authz.domain", "no RateLimitConfig of the xDS update defines domain %q, which authz.domain names: every Check would be allowed unlimited; serve it from the management server", a.Domain)
	default:
		c.errorf("authz.domain", "no rule file defines domain %q: every Check would be allowed unlimited", a.Domain)
	}
	checkRules := func(path string, os []extract.Override) {
		for j, o := range os {
			if o.Rule != "" && !names[o.Rule] {
				c.errorf(fmt.Sprintf("%s.overrides[%d].rule", path, j), "no rate_limit is named %q; set name: %s on the rate_limit to override, or omit rule to override every rule", o.Rule, o.Rule)
			}
		}
	}
	for i := range a.APIKeys {
		checkRules(fmt.Sprintf("authz.api_keys[%d]", i), a.APIKeys[i].Overrides)
	}
	for i := range a.Tenants {
		checkRules(fmt.Sprintf("authz.tenants[%d]", i), a.Tenants[i].Overrides)
	}
}

func collectRuleNames(ns []descriptor.Node, names map[string]bool) {
	for i := range ns {
		if rl := ns[i].RateLimit; rl != nil && rl.Name != "" {
			names[rl.Name] = true
		}
		collectRuleNames(ns[i].Descriptors, names)
	}
}

// ruleIdentities returns the identities the rule Set resolves tiers and
// overrides with (descriptor.Options.Identities): the listed ones, or none
// with the default descriptor keys when there is no authz: section.
func (cfg *Config) ruleIdentities() descriptor.Identities {
	if ids := cfg.Authz.Identities(); ids != nil {
		return ids
	}
	return &extract.Identities{}
}

// ruleKeys returns the API key descriptor key and the listed keys with
// which rule-file values under that key are canonicalised
// (extract.Identities.RuleKeyValue): without an authz: section, the
// default key and nothing listed. Listing errors leave nothing listed;
// compileAuthz reports them.
func (cfg *Config) ruleKeys() (string, *extract.Identities) {
	a := cfg.Authz
	if a == nil {
		return extract.DefaultAPIKeyKey, nil
	}
	ids, _ := extract.ListIdentities(a.Settings)
	return cmp.Or(a.APIKey.DescriptorKey, extract.DefaultAPIKeyKey), ids
}

// compile checks a (at path) and builds its identities and extractor.
func (a *Authz) compile(c *checker, path string) {
	if a.Domain == "" {
		c.errorf(join(path, "domain"), "missing: the domain whose rules Check applies, e.g. domain: edge")
	}
	nErr := len(*c.errs)
	ids := a.compileIdentities(c, path)
	for _, h := range []struct{ name, v string }{
		{"tenant", a.UpstreamHeaders.Tenant}, {"tier", a.UpstreamHeaders.Tier}, {"api_key_id", a.UpstreamHeaders.APIKeyID},
	} {
		if h.v != "" && !httpguts.ValidHeaderFieldName(h.v) {
			c.errorf(join(path, "upstream_headers."+h.name), "%q is not a valid header name: use letters, digits and -", h.v)
		}
	}
	x, err := extract.New(a.Settings, ids)
	c.report(path, err)
	if len(*c.errs) == nErr {
		a.extractor, a.identities = x, ids
	}
}

// compileIdentities builds the listed API keys and tenants (nil when they
// have a problem).
func (a *Authz) compileIdentities(c *checker, path string) *extract.Identities {
	ids, err := extract.ListIdentities(a.Settings)
	c.report(path, err)
	return ids
}

// requestsPerUnit reports at path why n is not a tier's requests_per_unit.
func requestsPerUnit(c *checker, path string, n *int64) (int64, bool) {
	v, err := descriptor.CheckRequestsPerUnit(n)
	if err != nil {
		c.errorf(path, "%v", err)
		return 0, false
	}
	return v, true
}

// Tiering holds the tier fields that extauthz adds to a rule file's
// rate_limit (inline in RateLimit):
//
//	rate_limit:
//	  unit: minute
//	  requests_per_unit: 10          # requests without a known tier
//	  tier_key: plan                 # the descriptor entry naming the tier
//	  tiers:
//	    free: {unit: minute, requests_per_unit: 60}
//	    pro:  {unit: minute, requests_per_unit: 1000}
//
// When tier_key is the API key or tenant descriptor key (authz.api_key and
// authz.tenant descriptor_key), the tier is the listed identity's, never the
// entry's value.
type Tiering struct {
	TierKey string               `yaml:"tier_key"`
	Tiers   map[string]TierLimit `yaml:"tiers"`
}

// TierLimit is one tier's limit; it counts with the rule's algorithm.
type TierLimit struct {
	Unit            string `yaml:"unit"`
	RequestsPerUnit *int64 `yaml:"requests_per_unit"`
	// Burst is the token bucket capacity, for token_bucket rules only.
	Burst int64 `yaml:"burst"`
}

// compile checks t, the tier fields of the rate_limit at path p whose own
// limit base is already compiled, and returns the rule's tiers (nil
// without tiers). NewSet links them to the identities (ruleIdentities).
func (t *Tiering) compile(c *checker, p string, base *descriptor.RateLimit) *descriptor.Tiers {
	switch {
	case t.TierKey == "" && len(t.Tiers) == 0:
		return nil
	case t.TierKey == "":
		c.errorf(join(p, "tiers"), "tiers need tier_key: the descriptor entry whose value (or listed identity) names the tier")
		return nil
	case len(t.Tiers) == 0:
		c.errorf(join(p, "tier_key"), "tier_key needs tiers: the limit of each tier")
		return nil
	case base.Unlimited:
		c.errorf(join(p, "tiers"), "an unlimited rate_limit has no tiers")
		return nil
	}
	out := &descriptor.Tiers{Key: t.TierKey, Limits: make(map[string]limiter.Limit, len(t.Tiers)), Units: make(map[string]descriptor.Unit, len(t.Tiers))}
	for name, tl := range t.Tiers {
		tp := join(join(p, "tiers"), name)
		if !extract.ValidName(name) {
			c.errorf(tp, "tier name %q: expected letters, digits, '.', '_' or '-'", name)
			continue
		}
		unit, ok := descriptor.ParseUnit(tl.Unit)
		if !ok {
			c.errorf(join(tp, "unit"), "unknown unit %q: expected one of %s", tl.Unit, descriptor.UnitNames)
			continue
		}
		n, ok := requestsPerUnit(c, join(tp, "requests_per_unit"), tl.RequestsPerUnit)
		if !ok {
			continue
		}
		if !checkBurst(c, join(tp, "burst"), tl.Burst, base.Algorithm, "") {
			continue
		}
		l := limiter.Limit{Requests: n, Period: unit.Period(), Burst: tl.Burst, Algorithm: base.Algorithm}
		if err := l.ValidateConfig(); err != nil { // as descriptor.NewSet checks it
			c.report(tp, err)
			continue
		}
		out.Limits[name], out.Units[name] = l, unit
	}
	return out
}
