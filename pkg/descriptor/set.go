package descriptor

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Set is the compiled, immutable rule tree of every domain. It is safe for
// concurrent use; reloads build a new Set and swap it in. The zero Set holds
// no domains.
type Set struct {
	domains    map[string]*domainTree
	names      []string // sorted
	defaultAlg limiter.Algorithm
	ids        Identities
	byUnit     map[Unit]string
}

// Options tune NewSet. The zero value is valid.
type Options struct {
	// DefaultAlgorithm is the algorithm of the rules Override builds (the
	// server-wide default_algorithm; zero is limiter.FixedWindow). Node
	// rate limits carry their own, already resolved, algorithm.
	DefaultAlgorithm limiter.Algorithm
	// Identities resolves the listed API keys and tenants whose tiers and
	// overrides choose rule limits (see Tiers); nil lists none, and then
	// no entry key names an identity.
	Identities Identities
	// ChainsByUnit names the backend chain of the rules Override builds,
	// by unit ("" or absent: the default chain); a node's rule carries its
	// own (RateLimit.Chain). NewSet does not check the names: the caller
	// knows its chains.
	ChainsByUnit map[Unit]string
}

type domainTree struct {
	name         string
	source       string
	root         node
	rules        []*Rule // in file order
	overridePath string
}

// node is one compiled tree node.
type node struct {
	key      string
	value    string // literal value or pattern, "" for key only
	kind     matchKind
	pattern  pattern // when kind is matchPattern or matchShared
	path     string
	source   string
	rule     *Rule
	children map[string]*group // by entry key; nil for a leaf
	keys     []string          // children's keys in file order (for Explain)
	depth    int
}

// group holds the children of a node that share one key, in the order
// Match tries them.
type group struct {
	exact    map[string]*node
	patterns []*node // file order: the first matching pattern wins
	keyOnly  *node
}

// MaxRequestsPerUnit is the largest requests_per_unit (Envoy's proto field
// is a uint32).
const MaxRequestsPerUnit = math.MaxUint32

// NewSet compiles domains into a Set. It reports every problem at once
// (errors.Join): an empty or duplicate domain, an empty key, a key/value
// listed twice at one level, share_threshold on a value without '*', an
// invalid limit, and replaces naming no rule of the domain (or the rule
// itself). Errors start with the Source of the offending domain or node.
func NewSet(domains []Domain, opts Options) (*Set, error) {
	s := &Set{domains: make(map[string]*domainTree, len(domains)), defaultAlg: opts.DefaultAlgorithm, ids: opts.Identities, byUnit: opts.ChainsByUnit}
	var errs []error
	for i := range domains {
		d := &domains[i]
		if d.Name == "" {
			errs = append(errs, srcErr(d.Source, "domain is empty"))
			continue
		}
		if prev, dup := s.domains[d.Name]; dup {
			errs = append(errs, srcErr(d.Source, fmt.Sprintf("duplicate domain %q (first defined at %s)", d.Name, prev.source)))
			continue
		}
		t := &domainTree{name: d.Name, source: d.Source, overridePath: d.Name + ".(override)"}
		t.root = node{path: d.Name, source: d.Source}
		b := builder{tree: t, errs: &errs, ids: opts.Identities}
		b.children(&t.root, d.Descriptors, nil)
		b.checkReplaces()
		s.domains[d.Name] = t
		s.names = append(s.names, d.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	sort.Strings(s.names)
	return s, nil
}

// Identities returns Options.Identities of s (nil for none): the listed
// API keys and tenants, and the canonical form of API keys.
func (s *Set) Identities() Identities {
	if s == nil {
		return nil
	}
	return s.ids
}

func srcErr(source, msg string) error {
	if source == "" {
		return errors.New(msg)
	}
	return fmt.Errorf("%s: %s", source, msg)
}

type builder struct {
	tree *domainTree
	errs *[]error
	ids  Identities
}

func (b *builder) fail(source, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path != "" {
		msg = path + ": " + msg
	}
	*b.errs = append(*b.errs, srcErr(source, msg))
}

// children compiles specs as the children of parent; levels is the path
// from the root down to parent.
func (b *builder) children(parent *node, specs []Node, levels []level) {
	for i := range specs {
		spec := &specs[i]
		if spec.Key == "" {
			b.fail(spec.Source, parent.path, "descriptor has an empty key")
			continue
		}
		n := &node{key: spec.Key, value: spec.Value, source: spec.Source, depth: parent.depth + 1}
		n.path = parent.path + "." + spec.Key
		if spec.Value != "" {
			n.path += "_" + spec.Value
		}
		switch {
		case spec.Value == "":
			n.kind = matchKeyOnly
		case isPattern(spec.Value):
			n.kind = matchPattern
			if spec.ShareThreshold {
				n.kind = matchShared
			}
			n.pattern = compilePattern(spec.Value)
		default:
			n.kind = matchExact
		}
		if spec.ShareThreshold && n.kind != matchShared {
			b.fail(spec.Source, n.path, "share_threshold needs a value with a '*' pattern")
		}
		if !b.attach(parent, n) {
			continue
		}
		lv := append(slices.Clip(levels), level{key: n.key, value: n.value, kind: n.kind, valueToMetric: spec.ValueToMetric})
		if spec.RateLimit != nil {
			n.rule = b.rule(n, spec, lv)
		}
		b.children(n, spec.Descriptors, lv)
	}
}

// attach adds n to parent's children, reporting a duplicate.
func (b *builder) attach(parent, n *node) bool {
	if parent.children == nil {
		parent.children = make(map[string]*group)
	}
	g := parent.children[n.key]
	if g == nil {
		g = &group{}
		parent.children[n.key] = g
		parent.keys = append(parent.keys, n.key)
	}
	var prev *node
	switch n.kind {
	case matchExact:
		prev = g.exact[n.value]
	case matchKeyOnly:
		prev = g.keyOnly
	default:
		for _, p := range g.patterns {
			if p.value == n.value {
				prev = p
			}
		}
	}
	if prev != nil {
		b.fail(n.source, n.path, "duplicate descriptor (key %q, value %q) at this level (first defined at %s)", n.key, n.value, prev.source)
		return false
	}
	switch n.kind {
	case matchExact:
		if g.exact == nil {
			g.exact = make(map[string]*node)
		}
		g.exact[n.value] = n
	case matchKeyOnly:
		g.keyOnly = n
	default:
		g.patterns = append(g.patterns, n)
	}
	return true
}

func (b *builder) rule(n *node, spec *Node, lv []level) *Rule {
	rl := spec.RateLimit
	r := &Rule{
		Domain:         b.tree.name,
		Name:           rl.Name,
		Path:           n.path,
		Unlimited:      rl.Unlimited,
		Shadow:         spec.ShadowMode,
		Quota:          spec.QuotaMode,
		Metadata:       spec.Metadata,
		DetailedMetric: spec.DetailedMetric,
		Replaces:       slices.Clone(rl.Replaces),
		Source:         spec.Source,
		levels:         lv,
	}
	for _, l := range lv {
		r.ValueToMetric = r.ValueToMetric || l.valueToMetric
	}
	r.Tiers = linkTiers(r, rl, b.ids)
	if rl.Tiers != nil {
		for _, name := range slices.Sorted(maps.Keys(rl.Tiers.Limits)) {
			if err := rl.Tiers.Limits[name].ValidateConfig(); err != nil {
				b.fail(spec.Source, n.path, "tier %s: %v", name, err)
			}
		}
	}
	if rl.Unlimited {
		if rl.Unit != UnitUnknown || rl.RequestsPerUnit != 0 || rl.Burst != 0 {
			b.fail(spec.Source, n.path, "an unlimited rate_limit takes no unit, requests_per_unit or burst")
		}
	} else {
		r.UnitCode = rl.Unit
		r.Unit = rl.Unit.String()
		r.Limit = limiter.Limit{Requests: rl.RequestsPerUnit, Period: rl.Unit.Period(), Burst: rl.Burst, Algorithm: rl.Algorithm}
		r.Chain = rl.Chain
		r.Lease = rl.Lease
		switch {
		case !rl.Unit.Valid():
			b.fail(spec.Source, n.path, "rate_limit unit is not one of %s", UnitNames)
		case rl.RequestsPerUnit > MaxRequestsPerUnit:
			b.fail(spec.Source, n.path, "requests_per_unit %d is above %d", rl.RequestsPerUnit, uint64(MaxRequestsPerUnit))
		default:
			if err := r.Limit.ValidateConfig(); err != nil {
				b.fail(spec.Source, n.path, "%v", err)
			}
		}
	}
	b.tree.rules = append(b.tree.rules, r)
	return r
}

func (b *builder) checkReplaces() {
	names := make(map[string]bool)
	for _, r := range b.tree.rules {
		if r.Name != "" {
			names[r.Name] = true
		}
	}
	for _, r := range b.tree.rules {
		for _, name := range r.Replaces {
			switch {
			case name == "":
				b.fail(r.Source, r.Path, "replaces has an entry with an empty name")
			case name == r.Name:
				b.fail(r.Source, r.Path, "rule %q replaces itself", name)
			case !names[name]:
				b.fail(r.Source, r.Path, "replaces %q, but no rate_limit of domain %q has that name", name, r.Domain)
			}
		}
	}
}

// Match returns the rule that descriptor d of domain matches, with
// envoyproxy/ratelimit's precedence at every level: exact value, then
// wildcard value, then key only. ok is false when no rule matches or the
// domain is unknown. Match does not allocate.
//
// As in envoyproxy/ratelimit, the search never backtracks: at each level
// the first of exact value, the first matching pattern (in file order) and
// key only is taken, and the search stops where the tree has no nested
// descriptors. A rule matches only when d has exactly as many entries as the
// rule's depth: a longer descriptor does not match a shallower rule, and a
// shorter one does not match a node that has no rate_limit. Unlimited rules
// match (ok is true, r.Unlimited is set).
func (s *Set) Match(domain string, d Descriptor) (r *Rule, ok bool) {
	if s == nil || len(d) == 0 {
		return nil, false
	}
	t := s.domains[domain]
	if t == nil {
		return nil, false
	}
	n := &t.root
	for i := range d {
		next := n.child(&d[i])
		if next == nil {
			return nil, false
		}
		if i == len(d)-1 {
			return next.rule, next.rule != nil
		}
		if next.children == nil {
			return nil, false
		}
		n = next
	}
	return nil, false
}

// child returns the child of n that e selects, or nil.
func (n *node) child(e *Entry) *node {
	g := n.children[e.Key]
	if g == nil {
		return nil
	}
	if c := g.exact[e.Value]; c != nil {
		return c
	}
	for _, c := range g.patterns {
		if c.pattern.match(e.Value) {
			return c
		}
	}
	return g.keyOnly
}

// HasDomain reports whether s holds rules for domain.
func (s *Set) HasDomain(domain string) bool {
	if s == nil {
		return false
	}
	_, ok := s.domains[domain]
	return ok
}

// Domains returns the names of the domains of s, sorted.
func (s *Set) Domains() []string {
	if s == nil {
		return nil
	}
	return slices.Clone(s.names)
}

// Rules returns the rules of domain in file order (nil for an unknown
// domain). The rules belong to s and must not be modified.
func (s *Set) Rules(domain string) []*Rule {
	if s == nil {
		return nil
	}
	if t := s.domains[domain]; t != nil {
		return slices.Clone(t.rules)
	}
	return nil
}

// Override returns the rule for a descriptor of domain that carries its own
// limit (Envoy's RateLimitDescriptor.limit, e.g. set from dynamic metadata).
// As in envoyproxy/ratelimit the override replaces the rule tree entirely
// for that descriptor: it applies whether or not the descriptor matches a
// rule, but only when the domain is known. The rule is never shadow, has no
// name and replaces nothing; it counts with the Set's default algorithm, and
// its counter (AppendKey) is one per distinct list of entries, independent of
// the limit's value. ok is false when the domain is unknown or unit is not
// valid. Override does not allocate.
func (s *Set) Override(domain string, unit Unit, requestsPerUnit uint32) (r Rule, ok bool) {
	if s == nil || !unit.Valid() {
		return Rule{}, false
	}
	t := s.domains[domain]
	if t == nil {
		return Rule{}, false
	}
	return Rule{
		Domain:   t.name,
		Path:     t.overridePath,
		Unit:     unit.String(),
		UnitCode: unit,
		Limit:    limiter.Limit{Requests: int64(requestsPerUnit), Period: unit.Period(), Algorithm: s.defaultAlg},
		Override: true,
		Chain:    s.byUnit[unit],
	}, true
}

// AppendKey appends to dst the storage key of the counter that descriptor d
// uses under rule r (which d matched), and returns the extended slice. The
// encoding is injective: two different (rule, counted values) pairs never
// produce the same key. It does not allocate when dst has room.
//
// The key names the rule (its algorithm, domain and the key and value or
// pattern of every level) and the counted values: the entry's value at each
// key-only or pattern level, except a pattern with share_threshold, where all
// matching values share one counter. Strings longer than MaxRawField bytes
// are replaced by a hash. Keys are stable across reloads while the rule's
// path and algorithm stay the same. See key.go for the format.
func AppendKey(dst []byte, r *Rule, d Descriptor) []byte {
	dst = append(dst, algorithmCode(r.Limit.Algorithm))
	dst = appendField(dst, r.Domain)
	if r.Override {
		dst = append(dst, keyOverride)
		for i := range d {
			dst = appendField(dst, d[i].Key)
			dst = appendField(dst, d[i].Value)
		}
		return dst
	}
	for i := range r.levels {
		lv := &r.levels[i]
		var value string
		if i < len(d) {
			value = d[i].Value
		}
		dst = appendField(dst, lv.key)
		dst = append(dst, byte(lv.kind))
		switch lv.kind {
		case matchExact, matchShared:
			dst = appendField(dst, lv.value)
		case matchKeyOnly:
			dst = appendField(dst, value)
		case matchPattern:
			dst = appendField(dst, lv.value)
			dst = appendField(dst, value)
		}
	}
	return dst
}
