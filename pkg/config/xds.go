package config

import (
	"fmt"
	"strconv"
	"strings"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
)

// maxXDSDepth bounds the nesting of an xDS RateLimitConfig's descriptors:
// a rule matches a descriptor of exactly its depth, and Envoy sends far
// fewer entries (limits.max_entries), so deeper trees are a mistake or an
// attack on the compiler.
const maxXDSDepth = 64

// WithXDSRules returns a copy of cfg whose domains are configs, the
// RateLimitConfig resources of one xDS update (rules_xds), compiled exactly
// as rule files are, with cfg's settings (default algorithm, chains, API
// key canonicalisation), and checked against cfg's authz section. cfg is
// not changed. The error joins one *Error per problem, each naming the
// resource and the field path ("xds resource \"edge\":
// descriptors[0].rate_limit.unit: ...").
//
// Each resource maps onto a rule file field by field: domain, descriptors
// (key, value, rate_limit, descriptors, shadow_mode, detailed_metric) and
// rate_limit (unit, requests_per_unit, unlimited, name, replaces). The
// proto has no presence for scalars: unit UNKNOWN is an absent unit, and
// requests_per_unit 0 is absent on an unlimited rate_limit (else it
// refuses every request, as in a rule file).
func (cfg *Config) WithXDSRules(configs []*rlsconfv3.RateLimitConfig) (*Config, error) {
	var errs []error
	rc := cfg.ruleCompiler()
	rc.merge = false // one resource per domain: a domain twice is refused
	domains := make([]Domain, 0, len(configs))
	for i, x := range configs {
		c := &checker{file: xdsSource(x.GetName(), i), pos: map[string]Pos{}, present: map[string]string{}, failed: map[string]bool{}, errs: &errs}
		d := Domain{Domain: x.GetDomain(), File: c.file}
		var err error
		if d.Descriptors, err = xdsDescriptors(x.GetDescriptors(), 1); err != nil {
			errs = append(errs, &Error{File: c.file, Msg: err.Error()})
			continue
		}
		rc.add(c, &d, "")
		domains = append(domains, d)
	}
	rc.compile()
	if len(errs) == 0 && cfg.Authz != nil {
		name := cfg.File
		if name == "" {
			name = "server file"
		}
		cfg.checkAuthzRules(&checker{file: name, pos: map[string]Pos{}, present: map[string]string{}, failed: map[string]bool{}, errs: &errs}, rc.domains)
	}
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	set, err := cfg.newSet(rc.domains)
	if err != nil {
		return nil, fmt.Errorf("config: xds rules: %w", err)
	}
	out := *cfg
	out.Domains, out.Rules = domains, set
	return &out, nil
}

// xdsSource names the i-th resource of an update in errors and rule
// sources.
func xdsSource(name string, i int) string {
	if name == "" {
		return fmt.Sprintf("xds resources[%d]", i)
	}
	return "xds resource " + strconv.Quote(name)
}

// xdsDescriptors maps descriptors at nesting depth onto a rule file's.
func xdsDescriptors(ds []*rlsconfv3.RateLimitDescriptor, depth int) ([]Descriptor, error) {
	if len(ds) == 0 {
		return nil, nil
	}
	if depth > maxXDSDepth {
		return nil, fmt.Errorf("descriptors nest deeper than %d levels: Envoy never sends descriptors that long; flatten the rules", maxXDSDepth)
	}
	out := make([]Descriptor, len(ds))
	for i, d := range ds {
		nested, err := xdsDescriptors(d.GetDescriptors(), depth+1)
		if err != nil {
			return nil, err
		}
		out[i] = Descriptor{
			Key: d.GetKey(), Value: d.GetValue(),
			RateLimit:   xdsRateLimit(d.GetRateLimit()),
			Descriptors: nested,
			ShadowMode:  d.GetShadowMode(), DetailedMetric: d.GetDetailedMetric(),
		}
	}
	return out, nil
}

// xdsRateLimit maps a RateLimitPolicy onto a rule file's rate_limit.
func xdsRateLimit(p *rlsconfv3.RateLimitPolicy) *RateLimit {
	if p == nil {
		return nil
	}
	rl := &RateLimit{Unlimited: p.GetUnlimited(), Name: p.GetName()}
	switch u := p.GetUnit(); {
	case u == rlsconfv3.RateLimitUnit_UNKNOWN:
	case rlsconfv3.RateLimitUnit_name[int32(u)] != "":
		rl.Unit = strings.ToLower(u.String())
	default:
		rl.Unit = strconv.Itoa(int(u)) // unknown to this build: the compiler names it
	}
	if n := p.GetRequestsPerUnit(); n != 0 || !rl.Unlimited {
		v := int64(n)
		rl.RequestsPerUnit = &v
	}
	for _, r := range p.GetReplaces() {
		rl.Replaces = append(rl.Replaces, Replace{Name: r.GetName()})
	}
	return rl
}
