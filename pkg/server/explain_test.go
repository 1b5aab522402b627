package server

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/internal/golden"
	"github.com/extauthz/extauthz/pkg/descriptor"
)

func TestExplainGolden(t *testing.T) {
	d := func(kv ...string) descriptor.Descriptor {
		var out descriptor.Descriptor
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, descriptor.Entry{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	tests := []struct {
		name   string
		domain string
		ds     []descriptor.Descriptor
	}{
		{name: "counted_replaced_unlimited_unmatched", domain: "edge", ds: []descriptor.Descriptor{
			d("remote_address", "10.0.0.1"), d("client_id", "c1"), d("client", "vip"), d("ldap", "x"), d("nope", "x"),
		}},
		{name: "shadow_and_bucket", domain: "edge", ds: []descriptor.Descriptor{d("path", "/shadow"), d("path", "/bucket")}},
		{name: "unknown_domain", domain: "other", ds: []descriptor.Descriptor{d("remote_address", "10.0.0.1")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			if err := Explain(&b, testRules(t), tc.domain, tc.ds); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", "explain", tc.name+".golden"), b.String())
		})
	}
}
