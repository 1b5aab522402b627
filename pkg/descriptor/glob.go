package descriptor

import "strings"

// pattern is a compiled descriptor value containing '*'. Each '*' matches
// any run of characters (including none), anywhere and any number of times:
// "/api/*/action", "*.example.com", "a*b*c". There is no escape: a value
// with a '*' is always a pattern (a literal '*' in a request value still
// matches it, since '*' matches itself).
type pattern struct {
	// parts are the literal runs between the stars; len(parts) >= 2.
	parts []string
}

func isPattern(value string) bool { return strings.Contains(value, "*") }

func compilePattern(value string) pattern {
	return pattern{parts: strings.Split(value, "*")}
}

// match reports whether s matches the pattern. It does not allocate. Matching
// the middle literals leftmost-first is exact for star-only patterns: it
// leaves the longest possible rest for the later literals and the suffix.
func (p *pattern) match(s string) bool {
	first, last := p.parts[0], p.parts[len(p.parts)-1]
	if len(s) < len(first)+len(last) || !strings.HasPrefix(s, first) {
		return false
	}
	s = s[len(first):]
	for _, lit := range p.parts[1 : len(p.parts)-1] {
		i := strings.Index(s, lit)
		if i < 0 {
			return false
		}
		s = s[i+len(lit):]
	}
	return len(s) >= len(last) && strings.HasSuffix(s, last)
}
