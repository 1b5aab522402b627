package descriptor

import (
	"fmt"
	"slices"
	"strings"
)

// Explain reports, for humans, how Match treats descriptor d of domain: the
// node chosen at each level and why, then the matched rule (path, name,
// limit, algorithm, shadow mode, what the counter is per, what it replaces)
// or why none matches (unknown domain, the level where the search stopped
// and what that level offers). The `extauthz explain` command prints it.
func (s *Set) Explain(domain string, d Descriptor) string {
	var b strings.Builder
	fmt.Fprintf(&b, "domain %q, descriptor %s\n", domain, d)
	if len(d) == 0 {
		b.WriteString("no match: the descriptor has no entries\n")
		return b.String()
	}
	var t *domainTree
	if s != nil {
		t = s.domains[domain]
	}
	if t == nil {
		fmt.Fprintf(&b, "no match: unknown domain %q (domains: %s)\n", domain, listOrNone(s.Domains()))
		return b.String()
	}
	n := &t.root
	var passedOver []string // lower-precedence nodes that also matched an entry
	for i := range d {
		e := &d[i]
		next := n.child(e)
		if next == nil {
			fmt.Fprintf(&b, "  %d. %s=%s: nothing matches\n", i+1, e.Key, e.Value)
			fmt.Fprintf(&b, "no match: %s\n", n.whyNoChild(e))
			return noteBacktrack(&b, passedOver)
		}
		passedOver = append(passedOver, n.alternatives(e, next)...)
		fmt.Fprintf(&b, "  %d. %s=%s: %s -> %s%s\n", i+1, e.Key, e.Value, next.how(), next.path, at(next.source))
		last := i == len(d)-1
		switch {
		case last && next.rule != nil:
			explainRule(&b, next.rule)
			return b.String()
		case last && next.children != nil:
			fmt.Fprintf(&b, "no match: the descriptor ends at %s, which has no rate_limit, only nested descriptors (keys %s); a rule matches only a descriptor with exactly as many entries as its depth\n",
				next.path, strings.Join(next.keys, ", "))
			return noteBacktrack(&b, passedOver)
		case last:
			fmt.Fprintf(&b, "no match: %s has neither a rate_limit nor nested descriptors, so its descriptors are never limited\n", next.path)
			return noteBacktrack(&b, passedOver)
		case next.children == nil:
			fmt.Fprintf(&b, "no match: the tree ends at %s (depth %d), but the descriptor has %d entries; a rule matches only a descriptor with exactly as many entries as its depth\n",
				next.path, next.depth, len(d))
			return noteBacktrack(&b, passedOver)
		}
		n = next
	}
	return b.String()
}

// noteBacktrack ends a no-match explanation, naming the lower-precedence
// nodes that also matched an entry but were never tried.
func noteBacktrack(b *strings.Builder, passedOver []string) string {
	if len(passedOver) > 0 {
		fmt.Fprintf(b, "note: the search never backtracks, so these also-matching alternatives were not tried: %s\n", strings.Join(passedOver, ", "))
	}
	return b.String()
}

// how says how n matched its entry.
func (n *node) how() string {
	switch n.kind {
	case matchExact:
		return fmt.Sprintf("exact value %q", n.value)
	case matchPattern:
		return fmt.Sprintf("pattern %q", n.value)
	case matchShared:
		return fmt.Sprintf("pattern %q (share_threshold)", n.value)
	default:
		return fmt.Sprintf("key %q (any value)", n.key)
	}
}

// alternatives lists the children of n other than chosen that also match e.
func (n *node) alternatives(e *Entry, chosen *node) []string {
	g := n.children[e.Key]
	var alts []string
	for _, c := range g.patterns {
		if c != chosen && c.pattern.match(e.Value) {
			alts = append(alts, c.path)
		}
	}
	if g.keyOnly != nil && g.keyOnly != chosen {
		alts = append(alts, g.keyOnly.path)
	}
	return alts
}

// whyNoChild explains why no child of n matches e.
func (n *node) whyNoChild(e *Entry) string {
	if n.children == nil {
		return fmt.Sprintf("%s has no nested descriptors", n.path)
	}
	g := n.children[e.Key]
	if g == nil {
		return fmt.Sprintf("no descriptor with key %q under %s (keys there: %s)", e.Key, n.path, strings.Join(n.keys, ", "))
	}
	var values, patterns []string
	for _, c := range g.exact {
		values = append(values, fmt.Sprintf("%q", c.value))
	}
	slices.Sort(values)
	for _, c := range g.patterns {
		patterns = append(patterns, fmt.Sprintf("%q", c.value))
	}
	return fmt.Sprintf("key %q under %s has no entry for value %q and no key-only entry (values there: %s; patterns, tried in this order: %s)",
		e.Key, n.path, e.Value, listOrNone(values), listOrNone(patterns))
}

func explainRule(b *strings.Builder, r *Rule) {
	fmt.Fprintf(b, "match: rule %s", r.Path)
	if r.Name != "" {
		fmt.Fprintf(b, " (name %q)", r.Name)
	}
	fmt.Fprintf(b, "%s\n", at(r.Source))
	if r.Unlimited {
		b.WriteString("  limit: unlimited (never counted; the descriptor is always OK)\n")
	} else {
		fmt.Fprintf(b, "  limit: %d per %s, %s", r.Limit.Requests, r.Unit, r.Limit.Algorithm)
		if r.Limit.Burst > 0 {
			fmt.Fprintf(b, ", burst %d", r.Limit.Burst)
		}
		if r.Limit.Requests == 0 {
			b.WriteString(" (refuses every request)")
		}
		b.WriteByte('\n')
		fmt.Fprintf(b, "  counter: %s\n", counterScope(r))
		if r.Chain != "" {
			fmt.Fprintf(b, "  chain: %s\n", r.Chain)
		}
		if r.Lease != nil {
			fmt.Fprintf(b, "  lease: blocks of %v of the remaining quota once a replica sees %d hits per %s\n", r.Lease.EffectiveFraction(), r.Lease.EffectiveHotAfter(), r.Unit)
		}
	}
	if r.Shadow {
		b.WriteString("  shadow mode: yes (counted and reported, never refuses)\n")
	} else {
		b.WriteString("  shadow mode: no\n")
	}
	if r.Quota {
		b.WriteString("  quota mode: yes (over its limit, refuses only when every quota descriptor of the request is over)\n")
	}
	if r.Metadata != nil {
		fmt.Fprintf(b, "  metadata: %d keys (returned in dynamic_metadata when the descriptor passes)\n", len(r.Metadata.GetFields()))
	}
	if len(r.Replaces) > 0 {
		fmt.Fprintf(b, "  replaces: %s (when a rule with one of these names matches another descriptor of the same request, that rule is dropped)\n",
			strings.Join(r.Replaces, ", "))
	}
}

// counterScope says what one counter of r is per.
func counterScope(r *Rule) string {
	var per, shared []string
	for _, lv := range r.levels {
		switch lv.kind {
		case matchKeyOnly:
			per = append(per, lv.key)
		case matchPattern:
			per = append(per, fmt.Sprintf("%s (each value matching %q)", lv.key, lv.value))
		case matchShared:
			shared = append(shared, fmt.Sprintf("%s matching %q", lv.key, lv.value))
		}
	}
	var parts []string
	if len(per) == 0 {
		parts = append(parts, "one counter for the rule")
	} else {
		parts = append(parts, "one counter per value of "+strings.Join(per, ", "))
	}
	if len(shared) > 0 {
		parts = append(parts, "shared by all values of "+strings.Join(shared, ", "))
	}
	return strings.Join(parts, "; ")
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func at(source string) string {
	if source == "" {
		return ""
	}
	return " (" + source + ")"
}
