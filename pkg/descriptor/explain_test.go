package descriptor

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/internal/golden"
	"github.com/extauthz/extauthz/pkg/limiter"
)

func TestExplain(t *testing.T) {
	s := matchSet(t)
	shared := mustSet(t, Domain{Name: "files", Source: "files.yaml:1:1", Descriptors: []Node{
		{Key: "tenant", Source: "files.yaml:3:5", Descriptors: []Node{
			{Key: "path", Value: "/files/*", ShareThreshold: true, ShadowMode: true, Source: "files.yaml:5:9",
				RateLimit: &RateLimit{Name: "files", Replaces: []string{"other"}, Unit: UnitHour, RequestsPerUnit: 100, Algorithm: limiter.TokenBucket, Burst: 10}},
		}},
		{Key: "other", Source: "files.yaml:9:5", RateLimit: &RateLimit{Name: "other", Unit: UnitDay, RequestsPerUnit: 0}},
	}})
	tests := []struct {
		name   string
		set    *Set
		domain string
		d      Descriptor
	}{
		{name: "key_only", set: s, domain: "edge", d: desc("remote_address", "1.2.3.4")},
		{name: "pattern", set: s, domain: "edge", d: desc("path", "/api/v1/action")},
		{name: "shared_nested", set: shared, domain: "files", d: desc("tenant", "t1", "path", "/files/a.pdf")},
		{name: "refuse_all", set: shared, domain: "files", d: desc("other", "x")},
		{name: "unlimited", set: s, domain: "edge", d: desc("ldap", "x")},
		{name: "unknown_domain", set: s, domain: "nope", d: desc("k", "v")},
		{name: "empty", set: s, domain: "edge", d: nil},
		{name: "unknown_key", set: s, domain: "edge", d: desc("nope", "x")},
		{name: "unmatched_value", set: s, domain: "edge", d: desc("path", "/other")},
		{name: "too_long", set: s, domain: "edge", d: desc("remote_address", "1.2.3.4", "path", "/x")},
		{name: "too_short", set: s, domain: "edge", d: desc("group", "g")},
		{name: "no_backtracking", set: s, domain: "edge", d: desc("client", "vip", "path", "/other")},
		{name: "exempt", set: s, domain: "edge", d: desc("allow", "x")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.set.Explain(tc.domain, tc.d)
			_, matched := tc.set.Match(tc.domain, tc.d)
			if matched != strings.Contains(got, "\nmatch: ") {
				t.Errorf("Explain says match = %v, Match says %v:\n%s", !matched, matched, got)
			}
			golden.Check(t, filepath.Join("testdata", "explain", tc.name+".golden"), got)
		})
	}
}
