package server

import (
	"context"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
)

// hostileServer serves quota, shadow and metadata rules of domain "q" with
// dynamic metadata on, from a memory store frozen at testNow.
func hostileServer(t *testing.T, d DecisionSettings) *Server {
	t.Helper()
	meta := func(m map[string]any) *structpb.Struct {
		s, err := structpb.NewStruct(m)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	perMinute := func(n int64) *descriptor.RateLimit {
		return &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: n}
	}
	rules, err := descriptor.NewSet([]descriptor.Domain{{Name: "q", Descriptors: []descriptor.Node{
		{Key: "login", RateLimit: perMinute(1)},
		{Key: "bucket", QuotaMode: true, RateLimit: perMinute(1), Metadata: meta(map[string]any{"bucket": "any"})},
		{Key: "model", Value: "small", QuotaMode: true, RateLimit: perMinute(1), Metadata: meta(map[string]any{"backend": "small"})},
		{Key: "model", Value: "large", QuotaMode: true, RateLimit: perMinute(5), Metadata: meta(map[string]any{"backend": "large"})},
		{Key: "a", RateLimit: perMinute(100), Metadata: meta(map[string]any{"route": map[string]any{"pool": "a"}})},
		{Key: "b", RateLimit: perMinute(100), Metadata: meta(map[string]any{"route": map[string]any{"extra": "b"}})},
		{Key: "api_key", RateLimit: perMinute(100)},
		{Key: "v", RateLimit: perMinute(100)},
	}}}, descriptor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(rules, Settings{Decisions: d}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := memstore.New(memstore.Options{MaxKeys: 10_000, Now: func() time.Time { return testNow }, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	s, err := New(Options{Store: mem}, snap)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRLS(t *testing.T, s *Server, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := s.ShouldRateLimit(context.Background(), request("q", ds...))
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestHostileQuotaShadowMetadata: a client that builds its own
// descriptors tries to get past a limit with quota descriptors, to make
// an exhausted backend look available in the metadata, to poison the
// metadata of later requests, and to read or inflate what the metadata
// carries.
func TestHostileQuotaShadowMetadata(t *testing.T) {
	over := rlsv3.RateLimitResponse_OVER_LIMIT

	t.Run("quota descriptors with room never lift a non-quota refusal", func(t *testing.T) {
		s := hostileServer(t, DecisionSettings{ResponseDynamicMetadata: true})
		mustRLS(t, s, desc("login", "u"))
		ds := []*ratelimitv3.RateLimitDescriptor{desc("login", "u")}
		for i := range 50 {
			ds = append(ds, desc("bucket", strings.Repeat("x", i+1)))
		}
		if resp := mustRLS(t, s, ds...); resp.GetOverallCode() != over {
			t.Fatalf("50 fresh quota descriptors lifted the refusal: %v", resp.GetOverallCode())
		}
	})

	t.Run("the same exhausted quota descriptor twice is still over", func(t *testing.T) {
		s := hostileServer(t, DecisionSettings{})
		mustRLS(t, s, desc("model", "small"))
		if resp := mustRLS(t, s, desc("model", "small"), desc("model", "small")); resp.GetOverallCode() != over {
			t.Fatalf("got %v", resp.GetOverallCode())
		}
	})

	t.Run("an override turns a quota rule into a plain limit", func(t *testing.T) {
		s := hostileServer(t, DecisionSettings{})
		o := desc("model", "small")
		o.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 1, Unit: typev3.RateLimitUnit_MINUTE}
		mustRLS(t, s, o)
		if resp := mustRLS(t, s, o, desc("model", "large")); resp.GetOverallCode() != over {
			t.Fatalf("an overridden descriptor kept quota mode: %v", resp.GetOverallCode())
		}
	})

	t.Run("an exhausted backend never shows in the metadata", func(t *testing.T) {
		s := hostileServer(t, DecisionSettings{ResponseDynamicMetadata: true})
		mustRLS(t, s, desc("model", "small"))
		resp := mustRLS(t, s, desc("model", "small"), desc("model", "large"))
		m := resp.GetDynamicMetadata().GetFields()["metadata"].GetStructValue().GetFields()
		if got := m["backend"].GetStringValue(); got != "large" || len(m) != 1 {
			t.Fatalf("metadata %v, want only backend: large", m)
		}
	})

	t.Run("merging never changes a rule's metadata for later requests", func(t *testing.T) {
		s := hostileServer(t, DecisionSettings{ResponseDynamicMetadata: true})
		mustRLS(t, s, desc("a", "1"), desc("b", "1"))
		resp := mustRLS(t, s, desc("a", "1"))
		route := resp.GetDynamicMetadata().GetFields()["metadata"].GetStructValue().GetFields()["route"].GetStructValue().GetFields()
		if len(route) != 1 || route["pool"].GetStringValue() != "a" {
			t.Fatalf("route after an earlier merge = %v, want only pool: a", route)
		}
	})

	t.Run("entries cannot forge metadata, nor leak an API key, nor inflate it", func(t *testing.T) {
		s := hostileServer(t, DecisionSettings{ResponseDynamicMetadata: true})
		long := strings.Repeat("v", 10_000)
		resp := mustRLS(t, s, desc("metadata", "backend=small"), desc("api_key", "sk-live-secret"), desc("v", long), desc("domain", "other"))
		md := resp.GetDynamicMetadata()
		if _, ok := md.GetFields()["metadata"]; ok {
			t.Errorf("client entries produced a metadata field: %v", md)
		}
		if got := md.GetFields()["domain"].GetStringValue(); got != "q" {
			t.Errorf("domain = %q", got)
		}
		raw, err := protojson.Marshal(md)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(raw), "sk-live-secret") {
			t.Errorf("the raw API key is in the metadata: %s", raw)
		}
		if len(raw) > 2000 {
			t.Errorf("a 10 kB value made %d bytes of metadata: values longer than max_value_length must be hashed", len(raw))
		}
	})

	t.Run("shadow_mode answers OK but still counts", func(t *testing.T) {
		s := hostileServer(t, DecisionSettings{ShadowMode: true})
		for range 3 {
			if resp := mustRLS(t, s, desc("login", "u")); resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				t.Fatalf("shadow answered %v", resp.GetOverallCode())
			}
		}
		// The same counters without shadow: already over.
		snap, err := NewSnapshot(s.Snapshot().Rules(), Settings{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.Swap(snap)
		if resp := mustRLS(t, s, desc("login", "u")); resp.GetOverallCode() != over {
			t.Fatalf("after shadow_mode off: %v, want OVER_LIMIT (shadow must keep counting)", resp.GetOverallCode())
		}
	})
}

// TestDecideQuotaAndShadow: Decide (the Go library's path) answers as
// ShouldRateLimit: a quota descriptor over with another with room is
// allowed, its status not; shadow_mode allows with no RetryAfter.
func TestDecideQuotaAndShadow(t *testing.T) {
	ctx := context.Background()
	small := descriptor.Descriptor{{Key: "model", Value: "small"}}
	large := descriptor.Descriptor{{Key: "model", Value: "large"}}
	login := descriptor.Descriptor{{Key: "login", Value: "u"}}

	s := hostileServer(t, DecisionSettings{})
	var r Result
	for range 2 {
		if err := s.Decide(ctx, "q", []descriptor.Descriptor{small, large}, &r); err != nil {
			t.Fatal(err)
		}
	}
	if !r.Allowed || r.Statuses[0].Allowed || !r.Statuses[0].Quota || !r.Statuses[1].Allowed || r.RetryAfter != 0 {
		t.Fatalf("quota: %+v", r)
	}

	s = hostileServer(t, DecisionSettings{ShadowMode: true})
	for range 2 {
		if err := s.Decide(ctx, "q", []descriptor.Descriptor{login}, &r); err != nil {
			t.Fatal(err)
		}
	}
	if !r.Allowed || r.Statuses[0].Allowed || r.RetryAfter != 0 {
		t.Fatalf("shadow_mode: %+v", r)
	}
}
