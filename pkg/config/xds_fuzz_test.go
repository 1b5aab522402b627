package config

import (
	"strings"
	"testing"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/protobuf/proto"
)

// FuzzWithXDSRules feeds WithXDSRules the resources a hostile management
// server could send (a serialized RateLimitConfig): it never panics, every
// problem names the resource, and an accepted one defines its domain.
// Seeds: testdata/fuzz/FuzzWithXDSRules and the ones below.
func FuzzWithXDSRules(f *testing.F) {
	for _, m := range []*rlsconfv3.RateLimitConfig{xdsEvery, nestedXDS(3), {Domain: "d", Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: "k", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit(42), RequestsPerUnit: 1}}}}} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	cfg, err := Load(strings.NewReader("rules_xds: {address: 127.0.0.1:18000}\n"), "server.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rc rlsconfv3.RateLimitConfig
		if proto.Unmarshal(data, &rc) != nil {
			return
		}
		got, err := cfg.WithXDSRules([]*rlsconfv3.RateLimitConfig{&rc})
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "xds resource") && !strings.HasPrefix(line, "config: ") {
					t.Fatalf("error line %q names no resource", line)
				}
			}
			return
		}
		if !got.Rules.HasDomain(rc.GetDomain()) {
			t.Fatalf("accepted, yet domain %q is not defined", rc.GetDomain())
		}
	})
}
