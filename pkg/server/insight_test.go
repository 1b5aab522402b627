package server

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
	"github.com/extauthz/extauthz/pkg/insight"
)

// insightParts returns a local recorder and a memory store for a server
// under test.
func insightParts(t *testing.T) (*insight.Recorder, *memstore.Store) {
	t.Helper()
	rec, err := insight.New(insight.Settings{}, insight.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mem, err := memstore.New(memstore.Options{MaxKeys: 1000, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	return rec, mem
}

// TestInsightRecordsBothAPIs: every decided descriptor of ShouldRateLimit
// and Check reaches the recorder with its outcome; API keys appear as the
// listed id or a sha256: prefix, never in clear.
func TestInsightRecordsBothAPIs(t *testing.T) {
	rec, mem := insightParts(t)
	x, ids := authzExtractor(t)
	snap, err := NewSnapshot(authzRules(t, ids), Settings{Authz: &AuthzSettings{Extractor: x}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Store: mem, Insight: rec}, snap)
	if err != nil {
		t.Fatal(err)
	}
	az, err := NewAuthz(srv)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// per_ip allows 2 a minute: the third request from 203.0.113.9 is refused.
	for range 3 {
		if _, err := srv.ShouldRateLimit(ctx, request("web", desc("remote_address", "203.0.113.9"))); err != nil {
			t.Fatal(err)
		}
	}
	// Raw keys sent by Envoy: one unlisted, one listed (shown as its id).
	for _, key := range []string{"sk-raw-secret", "sk-pro"} {
		if _, err := srv.ShouldRateLimit(ctx, request("web", desc("api_key", key))); err != nil {
			t.Fatal(err)
		}
	}
	for _, key := range []string{"sk-pro", "sk-unlisted"} {
		if _, err := az.Check(ctx, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.4", "x-api-key", key)); err != nil {
			t.Fatal(err)
		}
	}
	ans, err := rec.Offenders(ctx, insight.OffendersQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	for _, o := range ans.Offenders {
		got[o.Value] = [2]int64{o.Refused, o.Admitted}
	}
	want := map[string][2]int64{
		"203.0.113.9": {1, 2},
		"sha256:" + extract.HashValue("sk-raw-secret")[7:19]: {0, 1},
		"198.51.100.4": {0, 2},
		"acme":         {0, 2},
		"sha256:" + extract.HashValue("sk-unlisted")[7:19]: {0, 1},
	}
	for v, c := range want {
		if got[v] != c {
			t.Errorf("%s: refused/admitted %v, want %v (all: %v)", v, got[v], c, got)
		}
	}
	body, _ := json.Marshal(ans)
	for _, secret := range []string{"sk-raw-secret", "sk-pro", "sk-unlisted"} {
		if strings.Contains(string(body), secret) {
			t.Errorf("%s in clear: %s", secret, body)
		}
	}
}

// TestInsightQuotaMode: a quota-mode descriptor over its limit in a
// request that another quota descriptor admitted is recorded as near its
// limit (its client was served); when every quota descriptor is over, the
// request is refused and so recorded.
func TestInsightQuotaMode(t *testing.T) {
	rec, mem := insightParts(t)
	quota := func(n int64) *descriptor.RateLimit {
		return &descriptor.RateLimit{Unit: descriptor.UnitHour, RequestsPerUnit: n}
	}
	rules, err := descriptor.NewSet([]descriptor.Domain{{Name: "q", Descriptors: []descriptor.Node{
		{Key: "plan", QuotaMode: true, RateLimit: quota(1)},
		{Key: "burst", QuotaMode: true, RateLimit: quota(2)},
	}}}, descriptor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(rules, Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Store: mem, Insight: rec}, snap)
	if err != nil {
		t.Fatal(err)
	}
	// plan allows 1 an hour, burst 2: the second request is admitted with
	// plan over (burst has room), the third refused (both over).
	var codes []rlsv3.RateLimitResponse_Code
	for range 3 {
		resp, err := srv.ShouldRateLimit(context.Background(), request("q", desc("plan", "p1"), desc("burst", "b1")))
		if err != nil {
			t.Fatal(err)
		}
		codes = append(codes, resp.GetOverallCode())
	}
	if want := []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT}; !slices.Equal(codes, want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
	ans, err := rec.Offenders(context.Background(), insight.OffendersQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][2]int64{}
	for _, o := range ans.Offenders {
		got[o.Value] = [2]int64{o.Refused, o.Admitted}
	}
	// plan: admitted, admitted while over (near limit), refused.
	// burst: admitted twice, then over in the refused request.
	for v, c := range map[string][2]int64{"p1": {1, 2}, "b1": {1, 2}} {
		if got[v] != c {
			t.Errorf("%s: refused/admitted %v, want %v (all: %v)", v, got[v], c, got)
		}
	}
}
