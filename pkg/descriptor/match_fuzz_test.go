package descriptor

import (
	"strconv"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// FuzzMatch builds a rule tree and a descriptor from two strings, and checks
// that Set.Match never panics, never allocates its answer out of thin air
// (the rule belongs to the queried domain and was defined in the tree), and
// agrees with refMatch, a slow and literal reading of the documented
// matching rules. Seeds: testdata/fuzz/FuzzMatch.
//
// The tree is written in a small language, so that seeds read well and the
// fuzzer's string mutations produce new trees:
//
//	nodes = node { "," node }
//	node  = key [ "=" value ] [ "!" | "~" ] [ "(" nodes ")" ]
//
// "!" gives the node a rate_limit and "~" an unlimited one; a value with a
// '*' is a pattern. The descriptor is "key=value" entries joined by ",";
// its domain is "d", or "other" when it starts with "?".
func FuzzMatch(f *testing.F) {
	f.Add("a!,a=x!,a=x*!,a=*y!", "a=xy")
	f.Add("a=x(b!,b=*!),a(b=1!)", "a=x,b=2")
	f.Add("a=x(b!),a(b=1!)", "a=x,b=1")
	f.Add("k=*!(k=**!)", "k=,k=*")
	f.Add("a~(b!(c!))", "a=,b=,c=")
	f.Add("a!", "?a=1")
	f.Fuzz(func(t *testing.T, tree, desc string) {
		nodes, ok := parseFuzzTree(tree)
		if !ok {
			return
		}
		domains := []Domain{{Name: "d", Descriptors: nodes, Source: "root"}}
		set, err := NewSet(domains, Options{})
		if err != nil {
			return // e.g. a key/value listed twice at one level
		}
		domain, d := parseFuzzDescriptor(desc)

		got, ok := set.Match(domain, d)
		want := refMatch(domains, domain, d)
		switch {
		case ok != (want != nil):
			t.Fatalf("Match(%q, %s) over %q: got ok=%v, want %v (reference: %v)", domain, d, tree, ok, want != nil, sourceOf(want))
		case !ok:
			if got != nil {
				t.Fatalf("Match: got rule %q with ok=false", got.Source)
			}
			return
		case got.Source != want.Source:
			t.Fatalf("Match(%q, %s) over %q: got the rule of node %s, want node %s", domain, d, tree, got.Source, want.Source)
		case got.Domain != domain:
			t.Fatalf("Match: got a rule of domain %q, want %q", got.Domain, domain)
		case got.Unlimited != want.RateLimit.Unlimited:
			t.Fatalf("Match: got Unlimited=%v, want %v", got.Unlimited, want.RateLimit.Unlimited)
		}
		// The matched rule encodes a key without panicking, and only
		// from what the descriptor holds.
		key := AppendKey(nil, got, d)
		if len(key) == 0 {
			t.Fatal("AppendKey: empty key")
		}
	})
}

func sourceOf(n *Node) string {
	if n == nil {
		return "none"
	}
	return n.Source
}

// refMatch is the reference: at each level of domain's tree, among the
// nodes whose key is the entry's key, take the one whose literal value is
// the entry's value, else the first (in file order) whose pattern matches
// it, else the one without a value; never go back up. The descriptor
// matches the node its last entry reaches, if that node has a rate_limit.
func refMatch(domains []Domain, domain string, d Descriptor) *Node {
	if len(d) == 0 {
		return nil
	}
	var level []Node
	found := false
	for _, dom := range domains {
		if dom.Name == domain {
			level, found = dom.Descriptors, true
		}
	}
	if !found {
		return nil
	}
	for i, e := range d {
		var exact, pat, keyOnly *Node
		for j := range level {
			n := &level[j]
			if n.Key != e.Key {
				continue
			}
			switch {
			case n.Value == "":
				if keyOnly == nil {
					keyOnly = n
				}
			case strings.Contains(n.Value, "*"):
				if pat == nil && refGlob(n.Value, e.Value) {
					pat = n
				}
			case n.Value == e.Value:
				exact = n
			}
		}
		n := exact
		if n == nil {
			n = pat
		}
		if n == nil {
			n = keyOnly
		}
		if n == nil {
			return nil
		}
		if i == len(d)-1 {
			if n.RateLimit == nil {
				return nil
			}
			return n
		}
		level = n.Descriptors
	}
	return nil
}

// refGlob reports whether s matches pattern p, where each '*' matches any
// run of bytes, by dynamic programming over every prefix pair.
func refGlob(p, s string) bool {
	// m[j] reports whether p[:i] matches s[:j], for the current i.
	m := make([]bool, len(s)+1)
	m[0] = true
	for i := 0; i < len(p); i++ {
		next := make([]bool, len(s)+1)
		if p[i] == '*' {
			next[0] = m[0]
			for j := 1; j <= len(s); j++ {
				next[j] = m[j] || next[j-1]
			}
		} else {
			for j := 1; j <= len(s); j++ {
				next[j] = m[j-1] && s[j-1] == p[i]
			}
		}
		m = next
	}
	return m[len(s)]
}

// Bounds of the fuzzed trees, so that a run stays fast.
const (
	fuzzMaxNodes = 64
	fuzzMaxDepth = 6
)

// parseFuzzTree parses the tree language of FuzzMatch. ok is false for
// input that is not a tree (unbalanced parentheses, too large).
func parseFuzzTree(s string) (nodes []Node, ok bool) {
	p := &fuzzTreeParser{s: s}
	nodes = p.nodes(0)
	return nodes, p.ok() && p.i == len(s)
}

type fuzzTreeParser struct {
	s     string
	i     int
	count int
	bad   bool
}

func (p *fuzzTreeParser) ok() bool { return !p.bad && p.count <= fuzzMaxNodes }

// word reads up to the next special character.
func (p *fuzzTreeParser) word() string {
	start := p.i
	for p.i < len(p.s) && !strings.ContainsRune("=!~(),", rune(p.s[p.i])) {
		p.i++
	}
	return p.s[start:p.i]
}

func (p *fuzzTreeParser) peek(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

func (p *fuzzTreeParser) nodes(depth int) []Node {
	var out []Node
	for p.ok() {
		p.count++
		n := Node{Key: p.word(), Source: "n" + strconv.Itoa(p.count)}
		if p.peek('=') {
			n.Value = p.word()
		}
		switch {
		case p.peek('!'):
			n.RateLimit = &RateLimit{Unit: UnitMinute, RequestsPerUnit: int64(p.count), Algorithm: limiter.FixedWindow}
		case p.peek('~'):
			n.RateLimit = &RateLimit{Unlimited: true}
		}
		if p.peek('(') {
			if depth >= fuzzMaxDepth {
				p.bad = true
				return nil
			}
			n.Descriptors = p.nodes(depth + 1)
			if !p.peek(')') {
				p.bad = true
				return nil
			}
		}
		out = append(out, n)
		if !p.peek(',') {
			break
		}
	}
	return out
}

// parseFuzzDescriptor parses FuzzMatch's descriptor string.
func parseFuzzDescriptor(s string) (domain string, d Descriptor) {
	domain = "d"
	if rest, ok := strings.CutPrefix(s, "?"); ok {
		domain, s = "other", rest
	}
	if s == "" {
		return domain, nil
	}
	for _, part := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(part, "=")
		d = append(d, Entry{Key: k, Value: v})
	}
	return domain, d
}

// TestRefMatch pins the reference against hand-checked cases, so that
// FuzzMatch compares Match with something known to be right.
func TestRefMatch(t *testing.T) {
	tests := []struct {
		tree, desc string
		want       string // source of the matched node, or "none"
	}{
		{tree: "a!,a=x!,a=x*!,a=*y!", desc: "a=x", want: "n2"},  // exact wins
		{tree: "a!,a=x!,a=x*!,a=*y!", desc: "a=xy", want: "n3"}, // first pattern in file order
		{tree: "a!,a=x!,a=*y!,a=x*!", desc: "a=xy", want: "n3"}, // ... whichever comes first
		{tree: "a!,a=x!,a=x*!,a=*y!", desc: "a=q", want: "n1"},  // key only
		{tree: "a=x(b!),a(b=1!)", desc: "a=x,b=1", want: "n2"},  // no backtracking to the key-only node
		{tree: "a=x,a(b=1!)", desc: "a=x,b=1", want: "none"},    // exact node without children stops
		{tree: "a!(b!)", desc: "a=1", want: "n1"},               // shorter descriptor, node with a rule
		{tree: "a(b!)", desc: "a=1", want: "none"},              // ... node without a rule
		{tree: "a!", desc: "a=1,b=2", want: "none"},             // longer descriptor
		{tree: "a~", desc: "a=1", want: "n1"},                   // unlimited matches
		{tree: "a!", desc: "?a=1", want: "none"},                // unknown domain
		{tree: "a!", desc: "", want: "none"},                    // no entries
		{tree: "k=a*b*c!", desc: "k=abbc", want: "n1"},          // several stars
		{tree: "k=a*b*c!", desc: "k=acb", want: "none"},         //
		{tree: "k=*!", desc: "k=", want: "n1"},                  // a star matches nothing
	}
	for _, tc := range tests {
		nodes, ok := parseFuzzTree(tc.tree)
		if !ok {
			t.Fatalf("tree %q does not parse", tc.tree)
		}
		domain, d := parseFuzzDescriptor(tc.desc)
		domains := []Domain{{Name: "d", Descriptors: nodes}}
		if got := sourceOf(refMatch(domains, domain, d)); got != tc.want {
			t.Errorf("refMatch(%q, %q): got %s, want %s", tc.tree, tc.desc, got, tc.want)
		}
		set, err := NewSet(domains, Options{})
		if err != nil {
			t.Fatalf("NewSet(%q): %v", tc.tree, err)
		}
		r, ok := set.Match(domain, d)
		got := "none"
		if ok {
			got = r.Source
		}
		if got != tc.want {
			t.Errorf("Match(%q, %q): got %s, want %s", tc.tree, tc.desc, got, tc.want)
		}
	}
}
