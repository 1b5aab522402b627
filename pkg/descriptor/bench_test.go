package descriptor

import (
	"fmt"
	"testing"
)

// benchSet is a realistic tree: a few hundred exact values next to
// patterns and key-only entries, two levels deep.
func benchSet(b testing.TB) *Set {
	var apiKeys []Node
	for i := range 300 {
		apiKeys = append(apiKeys, Node{Key: "api_key", Value: fmt.Sprintf("key-%03d", i), RateLimit: perMinute(1000)})
	}
	apiKeys = append(apiKeys,
		Node{Key: "api_key", Value: "test-*", RateLimit: perMinute(10)},
		Node{Key: "api_key", RateLimit: perMinute(100)},
	)
	return mustSet(b, Domain{Name: "edge", Descriptors: append(apiKeys,
		Node{Key: "remote_address", RateLimit: perMinute(60)},
		Node{Key: "path", Value: "/api/*/users/*", RateLimit: perMinute(5)},
		Node{Key: "path", Value: "/static/*", RateLimit: perMinute(5)},
		Node{Key: "tenant", Descriptors: []Node{
			{Key: "path", Value: "/api/*", RateLimit: perMinute(5)},
			{Key: "path", RateLimit: perMinute(50)},
		}},
	)})
}

var benchCases = []struct {
	name     string
	d        Descriptor
	wantPath string
}{
	{name: "exact", d: desc("api_key", "key-150"), wantPath: "edge.api_key_key-150"},
	{name: "key_only", d: desc("remote_address", "10.1.2.3"), wantPath: "edge.remote_address"},
	{name: "pattern", d: desc("path", "/api/v1/users/42"), wantPath: "edge.path_/api/*/users/*"},
	{name: "nested", d: desc("tenant", "acme", "path", "/api/orders"), wantPath: "edge.tenant.path_/api/*"},
	{name: "miss", d: desc("user_agent", "curl/8.0"), wantPath: ""},
}

func BenchmarkMatch(b *testing.B) {
	s := benchSet(b)
	for _, bc := range benchCases {
		r, ok := s.Match("edge", bc.d)
		if got := ""; ok && r.Path != bc.wantPath || !ok && bc.wantPath != "" {
			if ok {
				got = r.Path
			}
			b.Fatalf("%s: Match = %q, want %q", bc.name, got, bc.wantPath)
		}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match("edge", bc.d)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				s.Match("edge", benchCases[i%len(benchCases)].d)
				i++
			}
		})
	})
}

func BenchmarkAppendKey(b *testing.B) {
	s := benchSet(b)
	long := desc("tenant", "acme", "path", "/api/"+string(make([]byte, 200)))
	for _, bc := range append(benchCases[:4:4], struct {
		name     string
		d        Descriptor
		wantPath string
	}{name: "long_value_hashed", d: long, wantPath: "edge.tenant.path_/api/*"}) {
		r, ok := s.Match("edge", bc.d)
		if !ok || r.Path != bc.wantPath {
			b.Fatalf("%s: Match = %v, %v; want %q", bc.name, r, ok, bc.wantPath)
		}
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 0, 512)
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendKey(buf[:0], r, bc.d)
			}
		})
	}
}

func TestMatchAllocs(t *testing.T) {
	s := benchSet(t)
	for _, bc := range benchCases {
		if allocs := testing.AllocsPerRun(100, func() { s.Match("edge", bc.d) }); allocs != 0 {
			t.Errorf("Match(%s) allocates %v times, want 0", bc.d, allocs)
		}
	}
}
