package descriptor

import (
	"regexp"
	"strings"
	"testing"
)

func TestPattern(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{pattern: "*", s: "", want: true},
		{pattern: "*", s: "anything", want: true},
		{pattern: "foo*", s: "foo", want: true},
		{pattern: "foo*", s: "foobar", want: true},
		{pattern: "foo*", s: "fo", want: false},
		{pattern: "*bar", s: "foobar", want: true},
		{pattern: "*bar", s: "barfoo", want: false},
		{pattern: "/api/*/action", s: "/api/v1/action", want: true},
		{pattern: "/api/*/action", s: "/api//action", want: true},
		{pattern: "/api/*/action", s: "/api/action", want: false},
		{pattern: "/api/*/action", s: "/api/v1/action/x", want: false},
		{pattern: "a*b*c", s: "abc", want: true},
		{pattern: "a*b*c", s: "aXbYbZc", want: true},
		{pattern: "a*b*c", s: "acb", want: false},
		{pattern: "ab*ba", s: "aba", want: false}, // prefix and suffix must not overlap
		{pattern: "ab*ba", s: "abba", want: true},
		{pattern: "a**b", s: "ab", want: true},
		{pattern: "*.*", s: "a.b", want: true},
		{pattern: "*.*", s: "ab", want: false},
		{pattern: "x*", s: "x*", want: true},
	}
	for _, tc := range tests {
		p := compilePattern(tc.pattern)
		if got := p.match(tc.s); got != tc.want {
			t.Errorf("%q matches %q = %v, want %v", tc.pattern, tc.s, got, tc.want)
		}
	}
}

// FuzzPattern checks the matcher against a regular expression built from the
// same pattern.
func FuzzPattern(f *testing.F) {
	f.Add("/api/*/action", "/api/v1/action")
	f.Add("ab*ba", "aba")
	f.Add("*a*a*", "aa")
	f.Add("**", "")
	f.Fuzz(func(t *testing.T, pattern, s string) {
		if !isPattern(pattern) {
			pattern += "*"
		}
		parts := strings.Split(pattern, "*")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re, err := regexp.Compile(`(?s)\A` + strings.Join(parts, ".*") + `\z`)
		if err != nil {
			t.Skip()
		}
		p := compilePattern(pattern)
		if got, want := p.match(s), re.MatchString(s); got != want {
			t.Fatalf("%q matches %q = %v, regexp says %v", pattern, s, got, want)
		}
	})
}
