package server_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/extauthz/extauthz/internal/golden"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/wire"
)

// compatNow is aligned to an hour: every window of the test starts there.
var compatNow = time.Unix(1_700_002_800, 0)

// compatServer serves testdata/compat (every field of envoyproxy/ratelimit's
// rule format) from a memory store frozen at compatNow; extra is YAML
// appended to the server file (the server-wide switches), replacing the
// file's top-level keys of the same name.
func compatServer(t *testing.T, extra string) (*server.Server, *prometheus.Registry) {
	t.Helper()
	data, err := os.ReadFile("testdata/compat/extauthz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "compat", "extauthz.yaml")
	var kept []string
	for _, line := range strings.SplitAfter(string(data), "\n") {
		key, _, ok := strings.Cut(line, ":")
		if ok && !strings.HasPrefix(line, " ") && strings.Contains(extra, key+":") {
			continue
		}
		kept = append(kept, line)
	}
	cfg, err := config.Load(strings.NewReader(strings.Join(kept, "")+extra), path)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	snap, err := wire.NewSnapshot(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := memstore.New(memstore.Options{MaxKeys: 1000, Now: func() time.Time { return compatNow }, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	reg := prometheus.NewRegistry()
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Store: mem, Metrics: metrics}, snap)
	if err != nil {
		t.Fatal(err)
	}
	return srv, reg
}

// d builds a descriptor from key, value pairs.
func d(kv ...string) *ratelimitv3.RateLimitDescriptor {
	out := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Entries = append(out.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return out
}

// codes renders a response as "OVERALL: status status ...", each status its
// code's first letter (O for OK, L for OVER_LIMIT).
func codes(resp *rlsv3.RateLimitResponse) string {
	var b strings.Builder
	b.WriteString(resp.GetOverallCode().String())
	b.WriteByte(':')
	for _, s := range resp.GetStatuses() {
		b.WriteByte(' ')
		if s.GetCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
			b.WriteByte('L')
		} else {
			b.WriteByte('O')
		}
	}
	return b.String()
}

type compatStep struct {
	name string
	ds   []*rlsv3.RateLimitRequest
	want []string // codes() of each request, in order
}

func ds(descs ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "compat", Descriptors: descs}
}

func times(n int, r *rlsv3.RateLimitRequest) []*rlsv3.RateLimitRequest {
	out := make([]*rlsv3.RateLimitRequest, n)
	for i := range out {
		out[i] = r
	}
	return out
}

// TestCompatRuleFile loads testdata/compat, which uses every field of
// envoyproxy/ratelimit's rule format, and checks the decisions the
// reference documents, in order (counters carry over between steps).
func TestCompatRuleFile(t *testing.T) {
	srv, reg := compatServer(t, "")
	steps := []compatStep{
		{"key only: one counter per value", append(times(3, ds(d("remote_address", "10.0.0.1"))), ds(d("remote_address", "10.0.0.2"))),
			[]string{"OK: O", "OK: O", "OVER_LIMIT: L", "OK: O"}},
		{"exact value", times(2, ds(d("path", "/login"))), []string{"OK: O", "OVER_LIMIT: L"}},
		{"wildcard: one counter per value", []*rlsv3.RateLimitRequest{ds(d("path", "/api/a")), ds(d("path", "/api/b")), ds(d("path", "/api/a"))},
			[]string{"OK: O", "OK: O", "OVER_LIMIT: L"}},
		{"share_threshold: one counter for all", []*rlsv3.RateLimitRequest{ds(d("path", "/files/x")), ds(d("path", "/files/y")), ds(d("path", "/files/z"))},
			[]string{"OK: O", "OK: O", "OVER_LIMIT: L"}},
		{"shadow_mode never refuses", times(3, ds(d("path", "/beta"))), []string{"OK: O", "OK: O", "OK: O"}},
		{"unlimited", times(3, ds(d("internal", "x"))), []string{"OK: O", "OK: O", "OK: O"}},
		{"nested", times(2, ds(d("tenant", "t1", "user", "u1"))), []string{"OK: O", "OVER_LIMIT: L"}},
		{"nested: too short a descriptor matches nothing", times(2, ds(d("tenant", "t1"))), []string{"OK: O", "OK: O"}},
		{"replaces across merged files", []*rlsv3.RateLimitRequest{
			ds(d("plan", "gold"), d("client_id", "c1")), ds(d("plan", "gold"), d("client_id", "c1")),
			ds(d("client_id", "c1")), ds(d("client_id", "c1")),
		}, []string{"OK: O O", "OK: O O", "OK: O", "OVER_LIMIT: L"}},
		{"quota: one over, another with room", []*rlsv3.RateLimitRequest{ds(d("model", "small")), ds(d("model", "small"), d("model", "large"))},
			[]string{"OK: O", "OK: L O"}},
		{"quota: every quota descriptor over", []*rlsv3.RateLimitRequest{ds(d("model", "small"), d("model", "large"))},
			[]string{"OVER_LIMIT: L L"}},
		{"quota: the lone quota descriptor over, others unlimited or unmatched", []*rlsv3.RateLimitRequest{ds(d("model", "small"), d("internal", "x"), d("nomatch", "y"))},
			[]string{"OVER_LIMIT: L O O"}},
		{"quota: a non-quota descriptor over refuses", []*rlsv3.RateLimitRequest{ds(d("model", "medium"), d("path", "/login"))},
			[]string{"OVER_LIMIT: O L"}},
	}
	for _, st := range steps {
		for i, req := range st.ds {
			resp, err := srv.ShouldRateLimit(context.Background(), req)
			if err != nil {
				t.Fatalf("%s #%d: %v", st.name, i, err)
			}
			if got := codes(resp); got != st.want[i] {
				t.Errorf("%s #%d: got %q, want %q", st.name, i, got, st.want[i])
			}
		}
	}

	// name: the status's current_limit carries it.
	resp, _ := srv.ShouldRateLimit(context.Background(), ds(d("path", "/login")))
	if got := resp.GetStatuses()[0].GetCurrentLimit().GetName(); got != "login" {
		t.Errorf("current_limit.name = %q, want login", got)
	}
	// unlimited: limit_remaining at its maximum, as the reference.
	resp, _ = srv.ShouldRateLimit(context.Background(), ds(d("internal", "x")))
	if got := resp.GetStatuses()[0].GetLimitRemaining(); got != math.MaxUint32 {
		t.Errorf("unlimited limit_remaining = %d, want %d", got, uint32(math.MaxUint32))
	}
	// detailed_metric and value_to_metric: the values in the rule label.
	if n := testutil.CollectAndCount(reg, "extauthz_rule_decisions_total"); n == 0 {
		t.Fatal("no rule decisions recorded")
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var labels []string
	for _, mf := range mfs {
		if mf.GetName() != "extauthz_rule_decisions_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "rule" {
					labels = append(labels, l.GetValue())
				}
			}
		}
	}
	joined := strings.Join(labels, " ")
	if !strings.Contains(joined, "compat.tenant_t1.user_u1") {
		t.Errorf("no detailed/value_to_metric label for tenant t1 user u1 in %q", joined)
	}
	if strings.Contains(joined, "10.0.0.1") {
		t.Errorf("a plain rule's label holds a request value: %q", joined)
	}
}

// TestCompatServerWide checks the server-wide switches: quota_mode puts
// every (not unlimited) descriptor in quota mode, unmatched ones included;
// shadow_mode answers OK with the statuses unchanged.
func TestCompatServerWide(t *testing.T) {
	tests := []struct {
		name  string
		extra string
		reqs  []*rlsv3.RateLimitRequest
		want  []string
	}{
		{"quota_mode: an over limit rule with an unmatched descriptor", "quota_mode: true\n",
			[]*rlsv3.RateLimitRequest{ds(d("path", "/login")), ds(d("path", "/login"), d("nomatch", "x"))},
			[]string{"OK: O", "OK: L O"}},
		{"quota_mode: every descriptor over", "quota_mode: true\n",
			[]*rlsv3.RateLimitRequest{ds(d("path", "/login")), ds(d("path", "/login"), d("internal", "x"))},
			[]string{"OK: O", "OVER_LIMIT: L O"}},
		{"shadow_mode", "shadow_mode: true\n",
			times(3, ds(d("path", "/login"), d("remote_address", "10.9.9.9"))),
			[]string{"OK: O O", "OK: L O", "OK: L L"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, reg := compatServer(t, tc.extra)
			for i, req := range tc.reqs {
				resp, err := srv.ShouldRateLimit(context.Background(), req)
				if err != nil {
					t.Fatal(err)
				}
				if got := codes(resp); got != tc.want[i] {
					t.Errorf("#%d: got %q, want %q", i, got, tc.want[i])
				}
				for _, h := range resp.GetResponseHeadersToAdd() {
					if h.GetKey() == "Retry-After" && resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
						t.Errorf("#%d: Retry-After on an OK answer", i)
					}
				}
			}
			shadow := counterValue(t, reg, "extauthz_shadow_mode_answers_total", "ratelimit")
			if want := float64(strings.Count(tc.extra, "shadow_mode") * 2); shadow != want {
				t.Errorf("shadow answers = %v, want %v", shadow, want)
			}
		})
	}
}

// counterValue is the value of the counter of family name whose api label
// is api (0 when absent).
func counterValue(t *testing.T, reg *prometheus.Registry, name, api string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "api" && l.GetValue() == api {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestCompatDynamicMetadata is the golden dynamic_metadata of a request
// whose quota descriptor "small" is over and "large" passes, with a
// hits_addend and an override: the shape envoyproxy/ratelimit returns.
func TestCompatDynamicMetadata(t *testing.T) {
	srv, _ := compatServer(t, "")
	ctx := context.Background()
	if _, err := srv.ShouldRateLimit(ctx, ds(d("model", "small"))); err != nil {
		t.Fatal(err)
	}
	over := d("remote_address", "10.0.0.7")
	over.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 10, Unit: typev3.RateLimitUnit_MINUTE}
	withHits := d("path", "/beta")
	withHits.HitsAddend = wrapperspb.UInt64(1)
	req := &rlsv3.RateLimitRequest{Domain: "compat", HitsAddend: 1, Descriptors: []*ratelimitv3.RateLimitDescriptor{
		d("model", "small"), d("model", "large"), d("remote_address", "10.0.0.9"), d("internal", "x"), over, withHits,
	}}
	resp, err := srv.ShouldRateLimit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if got := codes(resp); got != "OK: L O O O O O" {
		t.Fatalf("codes %q", got)
	}
	golden.Check(t, "testdata/compat/dynamic_metadata.json", canonicalJSON(t, resp.GetDynamicMetadata()))

	var hdrs []string
	for _, h := range resp.GetRequestHeadersToAdd() {
		hdrs = append(hdrs, h.GetKey()+": "+h.GetValue())
	}
	// The most restrictive firm limit: small, over (quota), 0 remaining.
	if got, want := strings.Join(hdrs, "\n"), "X-Client-Limit: 1\nX-Client-Remaining: 0\nX-Client-Reset: 60"; got != want {
		t.Errorf("request_headers_to_add:\n%s\nwant:\n%s", got, want)
	}

	// Off: no dynamic metadata, no upstream headers.
	plain, _ := compatServer(t, "response_dynamic_metadata: false\nupstream_headers: {enabled: false}\n")
	resp, err = plain.ShouldRateLimit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.DynamicMetadata != nil || resp.RequestHeadersToAdd != nil {
		t.Errorf("off, yet dynamic_metadata %v, request_headers_to_add %v", resp.DynamicMetadata, resp.RequestHeadersToAdd)
	}
}

// canonicalJSON renders m as indented JSON with sorted keys (protojson's
// own output is deliberately unstable).
func canonicalJSON(t *testing.T, m proto.Message) string {
	t.Helper()
	raw, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	out, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(out) + "\n"
}
