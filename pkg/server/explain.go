package server

import (
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// Explain writes, for humans, how a RateLimitService request of domain with
// descriptors ds would be decided by rules, without counting anything: for
// each descriptor how the rule tree matches it (descriptor.Set.Explain),
// then what the request does with each: counted against which limit,
// unlimited, replaced by another descriptor's rule, or not limited. API
// key values are canonicalised first, as ShouldRateLimit does: a key shows
// as its listed id or a hash, never in clear.
func Explain(w io.Writer, rules *descriptor.Set, domain string, ds []descriptor.Descriptor) error {
	vs := make([]verdict, len(ds))
	ds = slices.Clone(ds) // the caller's descriptors stay as they are
	for i := range ds {
		ds[i] = CanonicalDescriptor(rules, ds[i])
		vs[i] = verdict{desc: ds[i]}
	}
	replaces := false
	if rules.HasDomain(domain) {
		for i := range vs {
			v := &vs[i]
			r, ok := rules.Match(domain, v.desc)
			if !ok {
				continue
			}
			v.rule = r
			replaces = replaces || len(r.Replaces) > 0
			if r.Unlimited {
				v.kind = kindUnlimited
			} else {
				v.kind, v.shadow, v.limit, v.unit = kindCounted, r.Shadow, r.Limit, r.UnitCode
			}
		}
		if replaces {
			applyReplaces(vs, new(scratch))
		}
	}

	var b strings.Builder
	for i, d := range ds {
		fmt.Fprintf(&b, "descriptor %d: %s", i+1, rules.Explain(domain, d))
	}
	b.WriteString("request:\n")
	for i := range vs {
		v := &vs[i]
		fmt.Fprintf(&b, "  descriptor %d %s: ", i+1, v.desc)
		switch v.kind {
		case kindUnmatched:
			b.WriteString("not limited (OK, nothing counted)\n")
		case kindUnlimited:
			fmt.Fprintf(&b, "unlimited by %s (OK, nothing counted)\n", v.rule.Path)
		case kindReplaced:
			fmt.Fprintf(&b, "%s is replaced by %s (OK, nothing counted)\n", v.rule.Path, replacedBy(vs, v.rule.Name))
		case kindCounted:
			fmt.Fprintf(&b, "counted by %s: %d per %s, %s", policyName(v), v.limit.Requests, v.rule.Unit, v.limit.Algorithm)
			if v.limit.Burst > 0 {
				fmt.Fprintf(&b, ", burst %d", v.limit.Burst)
			}
			if v.rule.Tiers != nil {
				b.WriteString(", tiered (the limit may depend on the descriptor's tier or identity)")
			}
			if v.shadow {
				b.WriteString(" (shadow mode: never refuses)")
			}
			if v.rule.Chain != "" {
				fmt.Fprintf(&b, ", in chain %s", v.rule.Chain)
			}
			b.WriteByte('\n')
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// CanonicalDescriptor returns a copy of d whose API key values are in the
// canonical form ShouldRateLimit gives them on arrival (the listed id, or
// a hash; see descriptor.Identities.AppendKeyID), for tools that match
// descriptors against rules as the server does (explain, envoycheck).
func CanonicalDescriptor(rules *descriptor.Set, d descriptor.Descriptor) descriptor.Descriptor {
	d = slices.Clone(d)
	canonicalKeys(rules.Identities(), d, &scratch{})
	return d
}

// replacedBy names the rules of vs that replace the rule called name.
func replacedBy(vs []verdict, name string) string {
	var by []string
	for i := range vs {
		if r := vs[i].rule; r != nil {
			for _, n := range r.Replaces {
				if n == name {
					by = append(by, fmt.Sprintf("%s (descriptor %d)", policyName(&vs[i]), i+1))
				}
			}
		}
	}
	return strings.Join(by, ", ")
}
