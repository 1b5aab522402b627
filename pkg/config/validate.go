package config

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/server"
)

// Error is one problem of a config or rule file. Load and LoadFile return
// every problem at once, joined with errors.Join; errors.As finds the first
// *Error.
type Error struct {
	// File is the file's name; Line and Col (1-based) locate the offending
	// value, or its parent when the value is missing (0 when unknown).
	File      string
	Line, Col int
	// Path is the key path, e.g. "domains[0].descriptors[2].rate_limit.unit".
	Path string
	// Msg says what is wrong and what is expected.
	Msg string
}

// Error formats e as "file:line:col: path: message".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		if e.File != "" {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%d:%d", e.Line, e.Col)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// checker reports validation errors of one file at the positions the
// decoder recorded.
type checker struct {
	file    string
	pos     map[string]Pos
	present map[string]string
	failed  map[string]bool
	errs    *[]error
}

func (d *decoder) checker(errs *[]error) *checker {
	return &checker{file: d.file, pos: d.pos, present: d.present, failed: d.failed, errs: errs}
}

// lookup returns the position of path, or of its closest ancestor.
func (c *checker) lookup(path string) Pos {
	for {
		if p, ok := c.pos[path]; ok {
			return p
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			if p, ok := c.pos[""]; ok && path != "" {
				return p
			}
			return Pos{}
		}
		path = path[:i]
	}
}

// errorf reports a problem at path, unless the value at path (or around it)
// could not be decoded: that error already says what is wrong.
func (c *checker) errorf(path, format string, args ...any) {
	for q := path; ; {
		if c.failed[q] {
			return
		}
		i := strings.LastIndexAny(q, ".[")
		if i < 0 {
			break
		}
		q = q[:i]
	}
	p := c.lookup(path)
	*c.errs = append(*c.errs, &Error{File: c.file, Line: p.Line, Col: p.Col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// has reports whether the key at path was written in the file.
func (c *checker) has(path string) bool {
	_, ok := c.present[path]
	return ok
}

// source formats the position of path as "file:line:col", or as "file:
// path" when positions are unknown (rules from xDS).
func (c *checker) source(path string) string {
	p := c.lookup(path)
	if p.Line == 0 {
		if path == "" {
			return c.file
		}
		return c.file + ": " + path
	}
	return fmt.Sprintf("%s:%d:%d", c.file, p.Line, p.Col)
}

// report adds err, typically a section's Validate() result made of
// *field.Error values whose paths are relative to base, at the position of
// each path (an error that is not a *field.Error is placed at base).
func (c *checker) report(base string, err error) {
	field.Each(err, func(path string, e error) {
		c.errorf(field.Join(base, path), "%s", e.Error())
	})
}

// validate fills in defaults and checks the server settings (the rule
// files are checked by compile).
func (cfg *Config) validate(c *checker) {
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = DefaultGRPCAddr
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DefaultHTTPAddr
	}
	checkAddr(c, "grpc_addr", cfg.GRPCAddr)
	checkAddr(c, "http_addr", cfg.HTTPAddr)
	if cfg.GRPCAddr == cfg.HTTPAddr && !strings.HasSuffix(cfg.GRPCAddr, ":0") {
		at := "http_addr"
		if !c.has(at) {
			at = "grpc_addr"
		}
		c.errorf(at, "grpc_addr and http_addr are both %s: the two servers need different addresses", cfg.HTTPAddr)
	}
	switch r := cfg.NearLimitRatio; {
	case r == 0:
		cfg.NearLimitRatio = server.DefaultNearLimitRatio
	case r < 0 || r > 1:
		c.errorf("near_limit_ratio", "%v is out of range: expected a fraction of the limit above 0 and at most 1, e.g. %v", r, server.DefaultNearLimitRatio)
	}
	cfg.ResponseHeaders = cfg.ResponseHeaders.WithDefaults()
	c.report("response_headers", cfg.ResponseHeaders.Validate())
	cfg.UpstreamHeaders = cfg.UpstreamHeaders.WithDefaults()
	c.report("upstream_headers", cfg.UpstreamHeaders.Validate())
	if len(cfg.Backends) == 0 {
		cfg.Backends = []Backend{{Type: "memory"}}
	}
	for i := range cfg.Backends {
		cfg.Backends[i].validate(c, fmt.Sprintf("backends[%d]", i), i)
	}
	cfg.validateChains(c)
	c.report("", cfg.Failover.Validate())
	c.report("insight", cfg.Insight.Validate())
	c.report("tracing", cfg.Tracing.Validate())
	cfg.Ops.validate(c)
	c.report("admin", cfg.Admin.Validate())
	cfg.validateRulesXDS(c)
}

// validateRulesXDS checks rules_xds, and that no other source of domains
// is set beside it: the management server then owns every domain.
func (cfg *Config) validateRulesXDS(c *checker) {
	if cfg.RulesXDS == nil {
		return
	}
	*cfg.RulesXDS = cfg.RulesXDS.WithDefaults()
	c.report("rules_xds", cfg.RulesXDS.Validate())
	if len(cfg.Domains) > 0 {
		c.errorf("domains", "with rules_xds every domain comes from the xDS management server: serve these domains from it and remove domains (or remove rules_xds)")
	}
	if cfg.RulesDir != "" {
		c.errorf("rules_dir", "with rules_xds every domain comes from the xDS management server: serve these rules from it and remove rules_dir (or remove rules_xds)")
	}
	if cfg.Runtime != nil {
		c.errorf("runtime", "with rules_xds every domain comes from the xDS management server: serve these rules from it and remove runtime (or remove rules_xds)")
	}
}

func checkAddr(c *checker, path, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		var n uint64
		n, err = strconv.ParseUint(port, 10, 16)
		_ = n
		if err == nil && strings.ContainsAny(host, " /") {
			err = errors.New("bad host")
		}
	}
	if err != nil {
		c.errorf(path, "%q is not a listen address: expected HOST:PORT, e.g. 0.0.0.0:8081 or 127.0.0.1:8081", addr)
	}
}

// validate checks b, the i-th backend of its chain, at path.
func (b *Backend) validate(c *checker, path string, i int) {
	known := false
	for _, t := range BackendTypes {
		known = known || b.Type == t
	}
	switch {
	case b.Type == "":
		c.errorf(join(path, "type"), "missing: every backend needs a type: %s", orList(BackendTypes))
	case !known:
		if near := closest(b.Type, BackendTypes); near != "" {
			c.errorf(join(path, "type"), "unknown backend type %q; did you mean %q?", b.Type, near)
		} else {
			c.errorf(join(path, "type"), "unknown backend type %q: expected %s", b.Type, orList(BackendTypes))
		}
	}
	prefix := path + "."
	var foreign []string
	for p, owner := range c.present {
		if owner != "" && owner != b.Type && known && strings.HasPrefix(p, prefix) && !strings.Contains(p[len(prefix):], ".") {
			foreign = append(foreign, p)
		}
	}
	slices.Sort(foreign)
	for _, p := range foreign {
		c.errorf(p, "applies only to backends of type %s; this one is of type %s", c.present[p], b.Type)
	}
	switch b.Type {
	case "memory":
		c.report(path, b.Memory.Validate())
	case "redis":
		c.report(path, b.Redis.Validate())
	case "postgres":
		c.report(path, b.Postgres.Validate())
	}
	if b.Name != "" && !chainName.MatchString(b.Name) {
		c.errorf(join(path, "name"), "%q is not a valid backend name: expected lower-case letters, digits, '-' and '_'", b.Name)
	}
	c.report(path, b.Failover.Validate(i, b.Type, b.Type == "memory"))
}

// orList formats names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// ruleCompiler checks rule files and turns them into descriptor.Domains.
type ruleCompiler struct {
	defaultAlg limiter.Algorithm
	domains    []descriptor.Domain
	seen       map[string]string // domain -> where it was defined
	// pending are the domains add queued for compile; merge is
	// merge_domain_config.
	pending []pendingDomain
	merge   bool
	// apiKeyKey ("" for the default) and keys canonicalise rule values
	// under the API key descriptor key (see Config.ruleKeys).
	apiKeyKey string
	keys      *extract.Identities
	// chains are the names rate_limit.chain may give; nil: a lone rule
	// file (LoadRules), which may name none. byUnit is chains_by_unit
	// (unitChains), for the rules that name none.
	chains []string
	byUnit map[descriptor.Unit]string
}

// pendingDomain is a decoded rule file (or inline domain) waiting for
// compile: with the checker of its file and its key path ("" for a rule
// file's root).
type pendingDomain struct {
	c    *checker
	d    *Domain
	path string
}

// add queues d (at path) for compile, which needs every file of a domain
// first: replaces may name a rule of another file of a merged domain.
func (rc *ruleCompiler) add(c *checker, d *Domain, path string) {
	rc.pending = append(rc.pending, pendingDomain{c: c, d: d, path: path})
}

// compile checks every queued domain and adds it to rc.domains, in the
// order they were added; with merge, the files of one domain become one
// domain (the first file's), their top-level descriptors appended.
func (rc *ruleCompiler) compile() {
	names := make(map[string]map[string]bool) // domain -> rate_limit names of all its files
	for _, p := range rc.pending {
		if names[p.d.Domain] == nil {
			names[p.d.Domain] = make(map[string]bool)
		}
		collectNames(p.d.Descriptors, names[p.d.Domain])
	}
	index := make(map[string]int) // domain -> its index in rc.domains
	for _, p := range rc.pending {
		rc.compileDomain(p, names[p.d.Domain], index)
	}
	rc.pending = nil
}

// compileDomain checks p.d and adds it to rc.domains, or to the domain of
// the same name already there (index) when rc.merge.
func (rc *ruleCompiler) compileDomain(p pendingDomain, names map[string]bool, index map[string]int) {
	c, d, path := p.c, p.d, p.path
	d.pos = c.source(path)
	into := -1
	if d.Domain == "" {
		c.errorf(join(path, "domain"), "missing: every rule file needs a domain, e.g. domain: edge")
	} else if hasControl(d.Domain) {
		c.errorf(join(path, "domain"), "domain %q contains control characters (newline, tab, ...); Envoy never sends them", d.Domain)
	} else if prev, dup := rc.seen[d.Domain]; dup && !rc.merge {
		c.errorf(join(path, "domain"), "duplicate domain %q: already defined at %s; merge the two rule files, or set merge_domain_config: true", d.Domain, prev)
	} else if dup {
		into = index[d.Domain]
	} else {
		rc.seen[d.Domain] = c.source(join(path, "domain"))
	}
	nodes := rc.nodes(c, d.Descriptors, join(path, "descriptors"), names)
	if into >= 0 {
		rc.mergeNodes(c, &rc.domains[into], nodes, join(path, "descriptors"))
		return
	}
	index[d.Domain] = len(rc.domains)
	rc.domains = append(rc.domains, descriptor.Domain{Name: d.Domain, Source: d.pos, Descriptors: nodes})
}

// mergeNodes appends the top-level nodes of another file of dst's domain
// (at path) to dst, as envoyproxy/ratelimit's MERGE_DOMAIN_CONFIG does: a
// key and value that dst already has is an error naming both places.
func (rc *ruleCompiler) mergeNodes(c *checker, dst *descriptor.Domain, nodes []descriptor.Node, path string) {
	for i, n := range nodes {
		j := slices.IndexFunc(dst.Descriptors, func(m descriptor.Node) bool { return m.Key == n.Key && m.Value == n.Value })
		if j < 0 {
			dst.Descriptors = append(dst.Descriptors, n)
			continue
		}
		what := fmt.Sprintf("key %q without a value", n.Key)
		if n.Value != "" {
			what = fmt.Sprintf("key %q with value %q", n.Key, n.Value)
		}
		c.errorf(fmt.Sprintf("%s[%d]", path, i), "duplicate descriptor: %s is also defined at %s; merge_domain_config merges the rule files of domain %q, but each top-level descriptor must be defined in only one of them",
			what, dst.Descriptors[j].Source, dst.Name)
	}
}

func collectNames(ds []Descriptor, names map[string]bool) {
	for i := range ds {
		if rl := ds[i].RateLimit; rl != nil && rl.Name != "" {
			names[rl.Name] = true
		}
		collectNames(ds[i].Descriptors, names)
	}
}

func (rc *ruleCompiler) nodes(c *checker, ds []Descriptor, path string, names map[string]bool) []descriptor.Node {
	type kv struct{ key, value string }
	seen := make(map[kv]string)
	out := make([]descriptor.Node, 0, len(ds))
	for i := range ds {
		d := &ds[i]
		p := fmt.Sprintf("%s[%d]", path, i)
		if d.Key == cmp.Or(rc.apiKeyKey, extract.DefaultAPIKeyKey) {
			// A key in clear becomes its id or hash here, in the Config
			// too: rule paths (metric labels), /config and the errors
			// below never show it.
			d.Value = rc.keys.RuleKeyValue(d.Value)
		}
		if d.Key == "" {
			c.errorf(join(p, "key"), "missing: every descriptor needs a key")
		}
		if hasControl(d.Key) {
			c.errorf(join(p, "key"), "key %q contains control characters (newline, tab, ...); Envoy never sends them", d.Key)
		}
		if hasControl(d.Value) {
			c.errorf(join(p, "value"), "value %q contains control characters (newline, tab, ...); Envoy never sends them", d.Value)
		}
		if prev, dup := seen[kv{d.Key, d.Value}]; dup {
			what := fmt.Sprintf("key %q without a value", d.Key)
			if d.Value != "" {
				what = fmt.Sprintf("key %q with value %q", d.Key, d.Value)
			}
			c.errorf(p, "duplicate descriptor: %s appears twice at this level (first at %s); merge the two", what, prev)
		} else {
			seen[kv{d.Key, d.Value}] = c.source(p)
		}
		if d.ShareThreshold && !strings.Contains(d.Value, "*") {
			c.errorf(join(p, "share_threshold"), "needs a value with a '*' wildcard (e.g. value: /files/*): all values matching it then share one counter")
		}
		n := descriptor.Node{
			Key: d.Key, Value: d.Value,
			ShadowMode: d.ShadowMode, DetailedMetric: d.DetailedMetric, ValueToMetric: d.ValueToMetric, ShareThreshold: d.ShareThreshold,
			QuotaMode: d.QuotaMode, Metadata: d.Metadata,
			Source: c.source(p),
		}
		if d.RateLimit != nil {
			n.RateLimit = rc.rateLimit(c, d.RateLimit, join(p, "rate_limit"), names)
		}
		n.Descriptors = rc.nodes(c, d.Descriptors, join(p, "descriptors"), names)
		out = append(out, n)
	}
	return out
}

func (rc *ruleCompiler) rateLimit(c *checker, rl *RateLimit, p string, names map[string]bool) *descriptor.RateLimit {
	out := &descriptor.RateLimit{Name: rl.Name, Unlimited: rl.Unlimited, Algorithm: rc.defaultAlg, Burst: rl.Burst}
	for j, r := range rl.Replaces {
		rp := fmt.Sprintf("%s.replaces[%d].name", p, j)
		switch {
		case r.Name == "":
			c.errorf(rp, "missing: each replaces entry names the rate_limit it replaces")
		case r.Name == rl.Name:
			c.errorf(rp, "a rate_limit cannot replace itself (%q)", r.Name)
		case !names[r.Name]:
			c.errorf(rp, "no rate_limit of this domain is named %q; set name: %q on the rate_limit to replace", r.Name, r.Name)
		}
		out.Replaces = append(out.Replaces, r.Name)
	}
	if rl.Unlimited {
		out.Tiers = rl.Tiering.compile(c, p, out)
		for _, f := range []struct {
			name string
			set  bool
		}{
			{"unit", rl.Unit != ""},
			{"requests_per_unit", rl.RequestsPerUnit != nil},
			{"algorithm", rl.Algorithm != nil},
			{"burst", rl.Burst != 0},
			{"chain", rl.Chain != ""},
			{"lease", rl.Lease != nil},
		} {
			if f.set {
				c.errorf(join(p, f.name), "an unlimited rate_limit is never counted: remove %s (or unlimited)", f.name)
			}
		}
		return out
	}
	if rl.Unit == "" {
		c.errorf(join(p, "unit"), "missing: expected one of %s", descriptor.UnitNames)
	} else if err := out.Unit.UnmarshalText([]byte(rl.Unit)); err != nil {
		c.errorf(join(p, "unit"), "%v", err)
	}
	switch n := rl.RequestsPerUnit; {
	case n == nil:
		c.errorf(join(p, "requests_per_unit"), "missing: set how many requests each unit admits (0 refuses every request), or unlimited: true")
	case *n < 0:
		c.errorf(join(p, "requests_per_unit"), "%d is negative: expected 0 or more", *n)
	case *n > descriptor.MaxRequestsPerUnit:
		c.errorf(join(p, "requests_per_unit"), "%d is too large: expected at most %d", *n, int64(descriptor.MaxRequestsPerUnit))
	default:
		out.RequestsPerUnit = *n
	}
	if rl.Algorithm != nil {
		out.Algorithm = *rl.Algorithm
	}
	if !checkBurst(c, join(p, "burst"), rl.Burst, out.Algorithm, ": set algorithm: token_bucket or remove burst") {
		out.Burst = 0
	}
	if out.Unit.Valid() && rl.RequestsPerUnit != nil && out.RequestsPerUnit == *rl.RequestsPerUnit {
		l := limiter.Limit{Requests: out.RequestsPerUnit, Period: out.Unit.Period(), Burst: out.Burst, Algorithm: out.Algorithm}
		c.report(p, l.ValidateConfig()) // as descriptor.NewSet checks it
	}
	out.Tiers = rl.Tiering.compile(c, p, out)
	if rl.Lease != nil {
		if err := rl.Lease.Validate(); err != nil {
			c.report(join(p, "lease"), err)
		} else {
			out.Lease = rl.Lease
		}
	}
	out.Chain = rc.byUnit[out.Unit]
	if rl.Chain != "" {
		out.Chain = ""
		if rc.chains == nil {
			c.errorf(join(p, "chain"), "a lone rule file has no backend chains: load it through a server file that defines chain %q", rl.Chain)
		} else {
			checkChainName(c, join(p, "chain"), rl.Chain, rc.chains)
		}
		if rl.Chain != DefaultChain {
			out.Chain = rl.Chain
		}
	}
	return out
}

// checkBurst reports at path why burst is not the capacity of a rate_limit
// (or tier) counting with alg, and returns false then: negative, above
// MaxRequestsPerUnit, or set on another algorithm than token_bucket (the
// message then ends with fix).
func checkBurst(c *checker, path string, burst int64, alg limiter.Algorithm, fix string) bool {
	switch {
	case burst < 0:
		c.errorf(path, "%d is negative: expected the bucket capacity, 1 or more (default requests_per_unit)", burst)
	case burst > descriptor.MaxRequestsPerUnit:
		c.errorf(path, "%d is too large: expected at most %d", burst, int64(descriptor.MaxRequestsPerUnit))
	case burst > 0 && alg != limiter.TokenBucket:
		c.errorf(path, "only a token_bucket has a burst, and this rate_limit uses %s%s", alg, fix)
	default:
		return true
	}
	return false
}

// hasControl reports whether s holds a control character. Envoy's
// descriptors come from header values and route config, which never carry
// them; a rule that needs one is a mistake (often a stray YAML block scalar).
func hasControl(s string) bool {
	return strings.ContainsFunc(s, unicode.IsControl)
}
