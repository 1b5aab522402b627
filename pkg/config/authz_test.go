package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// loadAuthz loads a server file with LoadFile.
func loadAuthz(t *testing.T, path string) (*Config, error) {
	t.Helper()
	return LoadFile(path)
}

func TestAuthzGood(t *testing.T) {
	cfg, err := loadAuthz(t, filepath.Join("testdata", "authz", "authz.good.yaml"))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	x := cfg.Authz.Extractor()
	if x == nil || cfg.Authz.Identities() == nil {
		t.Fatal("Extractor or Identities is nil after load")
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		req        extract.Request
		want       string
		wantTenant string
		wantTier   string
	}{
		{
			name: "listed key behind a trusted proxy",
			req: extract.Request{Path: "/users/7", Peer: netip.MustParseAddr("10.1.2.3"), Headers: map[string]string{
				"x-forwarded-for": "6.6.6.6, 198.51.100.9, 192.0.2.1", "authorization": "Bearer key-pro-123",
			}},
			want:       "per_ip(remote_address=198.51.100.9);per_key(api_key=acme-prod);per_tenant_route(tenant=acme, route=/users/{id})",
			wantTenant: "acme", wantTier: "pro",
		},
		{
			name:       "clear-text listed key, tenant from host",
			req:        extract.Request{Host: "api.acme.example", Path: "/x", Query: "api_key=key-free-456", Peer: netip.MustParseAddr("203.0.113.5")},
			want:       "per_ip(remote_address=203.0.113.5);per_key(api_key=hobby)",
			wantTenant: "acme", wantTier: "free",
		},
		{
			name: "no key denies with 401",
			req:  extract.Request{Peer: netip.MustParseAddr("203.0.113.5")},
			want: "deny 401",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e extract.Extraction
			x.Extract(&tc.req, now, &e)
			if got := fmtExtraction(&e); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if !e.Denied && (e.Tenant != tc.wantTenant || e.Tier != tc.wantTier) {
				t.Errorf("got tenant %q tier %q, want %q %q", e.Tenant, e.Tier, tc.wantTenant, tc.wantTier)
			}
		})
	}
	if got, want := cfg.Authz.UpstreamHeaders, (UpstreamHeaders{Tenant: "x-tenant-id", Tier: "x-tier", APIKeyID: "x-api-key-id"}); got != want {
		t.Errorf("upstream headers: got %+v, want %+v", got, want)
	}

	// Overrides are linked into the rules: hobby's override of per_key
	// until 2099, globex's of every rule.
	perKey := mustMatch(t, cfg.Rules, "edge", desc("api_key", "hobby"))
	if got, want := perKey.ResolveRequest(desc("api_key", "hobby"), now, nil, nil).Limit, (limiter.Limit{Requests: 500, Period: time.Minute}); got != want {
		t.Errorf("hobby's per_key limit: got %v, want %v", got, want)
	}
	if got, want := perKey.ResolveRequest(desc("api_key", "acme-prod"), now, nil, nil).Limit, (limiter.Limit{Requests: 1000, Period: time.Minute}); got != want {
		t.Errorf("acme-prod's per_key limit (tier pro): got %v, want %v", got, want)
	}
	if got, want := perKey.ResolveRequest(desc("api_key", "unlisted"), now, nil, nil).Limit, (limiter.Limit{Requests: 10, Period: time.Minute}); got != want {
		t.Errorf("an unlisted key's per_key limit: got %v, want %v", got, want)
	}
	plan := mustMatch(t, cfg.Rules, "edge", desc("plan", "gold"))
	for _, tc := range []struct {
		plan string
		want limiter.Limit
	}{
		{plan: "gold", want: limiter.Limit{Requests: 10, Period: time.Second, Burst: 20, Algorithm: limiter.TokenBucket}},
		{plan: "silver", want: limiter.Limit{Requests: 1, Period: time.Hour, Algorithm: limiter.TokenBucket}},
	} {
		if got := plan.ResolveRequest(desc("plan", tc.plan), now, nil, nil).Limit; got != tc.want {
			t.Errorf("plan %s: got %v, want %v", tc.plan, got, tc.want)
		}
	}
	route := mustMatch(t, cfg.Rules, "edge", desc("tenant", "globex", "route", "/users/{id}"))
	if got, want := route.ResolveRequest(desc("tenant", "globex", "route", "/users/{id}"), now, nil, nil).Limit, (limiter.Limit{Requests: 5, Period: time.Second}); got != want {
		t.Errorf("globex's route limit: got %v, want %v", got, want)
	}

	out, err := cfg.Redacted()
	if err != nil {
		t.Fatalf("Redacted: %v", err)
	}
	if strings.Contains(string(out), "key-free-456") || !strings.Contains(string(out), RedactedText) {
		t.Errorf("Redacted shows the clear-text API key or no redaction:\n%s", out)
	}
}

func fmtExtraction(e *extract.Extraction) string {
	if e.Denied {
		return fmt.Sprintf("deny %d", e.DenyStatus)
	}
	parts := make([]string, len(e.Descriptors))
	for i, d := range e.Descriptors {
		parts[i] = e.Names[i] + d.String()
	}
	return strings.Join(parts, ";")
}

// TestAuthzBad checks the errors of each testdata/authz/*.bad.yaml against
// its .golden file (go test -run TestAuthzBad -update rewrites them): every
// problem at once, each at its file:line:col and key path.
func TestAuthzBad(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "authz", "*.bad.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad files: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			_, err := loadAuthz(t, file)
			if err == nil {
				t.Fatal("got no error, want some")
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s:\ngot:\n%swant:\n%s", golden, got, want)
			}
		})
	}
}

func TestTieringCompile(t *testing.T) {
	i64 := func(n int64) *int64 { return &n }
	tests := []struct {
		name    string
		tiering Tiering
		base    descriptor.RateLimit
		want    map[string]limiter.Limit
		wantErr string
	}{
		{name: "none", tiering: Tiering{}},
		{
			name:    "two tiers keep the rule's algorithm",
			tiering: Tiering{TierKey: "plan", Tiers: map[string]TierLimit{"free": {Unit: "minute", RequestsPerUnit: i64(60)}, "pro": {Unit: "hour", RequestsPerUnit: i64(10000)}}},
			base:    descriptor.RateLimit{Algorithm: limiter.SlidingWindow},
			want: map[string]limiter.Limit{
				"free": {Requests: 60, Period: time.Minute, Algorithm: limiter.SlidingWindow},
				"pro":  {Requests: 10000, Period: time.Hour, Algorithm: limiter.SlidingWindow},
			},
		},
		{
			name:    "burst on a token bucket",
			tiering: Tiering{TierKey: "plan", Tiers: map[string]TierLimit{"pro": {Unit: "second", RequestsPerUnit: i64(10), Burst: 50}}},
			base:    descriptor.RateLimit{Algorithm: limiter.TokenBucket},
			want:    map[string]limiter.Limit{"pro": {Requests: 10, Period: time.Second, Burst: 50, Algorithm: limiter.TokenBucket}},
		},
		{name: "tiers without key", tiering: Tiering{Tiers: map[string]TierLimit{"a": {Unit: "minute", RequestsPerUnit: i64(1)}}}, wantErr: "tiers need tier_key"},
		{name: "key without tiers", tiering: Tiering{TierKey: "plan"}, wantErr: "tier_key needs tiers"},
		{name: "unlimited", tiering: Tiering{TierKey: "plan", Tiers: map[string]TierLimit{"a": {Unit: "minute", RequestsPerUnit: i64(1)}}}, base: descriptor.RateLimit{Unlimited: true}, wantErr: "unlimited rate_limit has no tiers"},
		{name: "bad unit", tiering: Tiering{TierKey: "plan", Tiers: map[string]TierLimit{"a": {Unit: "fortnight", RequestsPerUnit: i64(1)}}}, wantErr: `tiers.a.unit: unknown unit "fortnight"`},
		{name: "missing requests", tiering: Tiering{TierKey: "plan", Tiers: map[string]TierLimit{"a": {Unit: "minute"}}}, wantErr: "tiers.a.requests_per_unit: missing"},
		{name: "burst on fixed window", tiering: Tiering{TierKey: "plan", Tiers: map[string]TierLimit{"a": {Unit: "minute", RequestsPerUnit: i64(1), Burst: 5}}}, wantErr: "tiers.a.burst: only a token_bucket has a burst"},
		{name: "bad tier name", tiering: Tiering{TierKey: "plan", Tiers: map[string]TierLimit{"a b": {Unit: "minute", RequestsPerUnit: i64(1)}}}, wantErr: `tier name "a b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var errs []error
			c := &checker{file: "f.yaml", pos: map[string]Pos{}, present: map[string]string{}, errs: &errs}
			got := tc.tiering.compile(c, "rate_limit", &tc.base)
			if tc.wantErr != "" {
				if len(errs) == 0 || !strings.Contains(joinSorted(errs).Error(), tc.wantErr) {
					t.Fatalf("got errors %v, want one containing %q", errs, tc.wantErr)
				}
				return
			}
			if len(errs) > 0 {
				t.Fatalf("got errors %v, want none", errs)
			}
			if tc.want == nil {
				if got != nil {
					t.Errorf("got %+v, want nil", got)
				}
				return
			}
			if got.Key != tc.tiering.TierKey || len(got.Limits) != len(tc.want) {
				t.Fatalf("got %+v, want key %q and %d tiers", got, tc.tiering.TierKey, len(tc.want))
			}
			for name, w := range tc.want {
				if got.Limits[name] != w {
					t.Errorf("tier %s: got %v, want %v", name, got.Limits[name], w)
				}
			}
		})
	}
}
