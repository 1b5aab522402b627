package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/logging"
)

// fmtStatus renders a DescriptorStatus compactly:
// "OVER_LIMIT login 1/HOUR remaining=0 reset=1h0m0s".
func fmtStatus(s *rlsv3.RateLimitResponse_DescriptorStatus) string {
	var b strings.Builder
	b.WriteString(s.GetCode().String())
	if l := s.GetCurrentLimit(); l != nil {
		fmt.Fprintf(&b, " %s %d/%s", l.GetName(), l.GetRequestsPerUnit(), l.GetUnit())
		if m := l.GetUnitMultiplier(); m != nil {
			fmt.Fprintf(&b, "x%d", m.GetValue())
		}
	}
	if s.GetLimitRemaining() != 0 || s.GetCurrentLimit() != nil {
		fmt.Fprintf(&b, " remaining=%d", s.GetLimitRemaining())
	}
	if d := s.GetDurationUntilReset(); d != nil {
		fmt.Fprintf(&b, " reset=%v", d.AsDuration())
	}
	return b.String()
}

func fmtStatuses(resp *rlsv3.RateLimitResponse) []string {
	out := make([]string, len(resp.GetStatuses()))
	for i, s := range resp.GetStatuses() {
		out[i] = fmtStatus(s)
	}
	return out
}

func withHits(d *ratelimitv3.RateLimitDescriptor, hits uint64) *ratelimitv3.RateLimitDescriptor {
	d.HitsAddend = wrapperspb.UInt64(hits)
	return d
}

func withOverride(d *ratelimitv3.RateLimitDescriptor, rpu uint32, unit typev3.RateLimitUnit, mult uint32) *ratelimitv3.RateLimitDescriptor {
	d.Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: unit}
	if mult > 0 {
		d.Limit.UnitMultiplier = wrapperspb.UInt32(mult)
	}
	return d
}

func TestShouldRateLimitSemantics(t *testing.T) {
	type step struct {
		advance      time.Duration // clock advance before the call
		req          *rlsv3.RateLimitRequest
		wantCode     rlsv3.RateLimitResponse_Code
		wantStatuses []string
	}
	const (
		ok   = rlsv3.RateLimitResponse_OK
		over = rlsv3.RateLimitResponse_OVER_LIMIT
	)
	tests := []struct {
		name     string
		settings Settings
		steps    []step
	}{{
		name: "key-only rule counts each value separately, refuses the third hit",
		steps: []step{
			{req: request("edge", desc("remote_address", "1.1.1.1")), wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=1 reset=1m0s"}},
			{req: request("edge", desc("remote_address", "1.1.1.1")), wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=0 reset=1m0s"}},
			{advance: 15 * time.Second, req: request("edge", desc("remote_address", "1.1.1.1")), wantCode: over,
				wantStatuses: []string{"OVER_LIMIT edge.remote_address 2/MINUTE remaining=0 reset=45s"}},
			{req: request("edge", desc("remote_address", "2.2.2.2")), wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=1 reset=45s"}},
			{advance: 45 * time.Second, req: request("edge", desc("remote_address", "1.1.1.1")), wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=1 reset=1m0s"}},
		},
	}, {
		name: "one descriptor over makes the request over; statuses keep request order",
		steps: []step{
			{req: request("edge", desc("path", "/login"), desc("remote_address", "a")), wantCode: ok,
				wantStatuses: []string{"OK login 1/HOUR remaining=0 reset=1h0m0s", "OK edge.remote_address 2/MINUTE remaining=1 reset=1m0s"}},
			{req: request("edge", desc("path", "/login"), desc("remote_address", "a")), wantCode: over,
				wantStatuses: []string{"OVER_LIMIT login 1/HOUR remaining=0 reset=1h0m0s", "OK edge.remote_address 2/MINUTE remaining=0 reset=1m0s"}},
		},
	}, {
		name: "unknown domain, unmatched descriptor and too deep descriptor are OK and not counted",
		steps: []step{
			{req: request("nope", desc("remote_address", "a")), wantCode: ok, wantStatuses: []string{"OK"}},
			{req: request("edge", desc("unknown", "x"), desc("group", "g"), desc("remote_address", "a", "extra", "b")), wantCode: ok,
				wantStatuses: []string{"OK", "OK", "OK"}},
		},
	}, {
		name: "unlimited rule is OK with maximal remaining",
		steps: []step{
			{req: request("edge", desc("ldap", "x")), wantCode: ok, wantStatuses: []string{"OK remaining=4294967295"}},
		},
	}, {
		name: "shadow rule is counted but never refuses",
		steps: []step{
			{req: request("edge", desc("path", "/shadow")), wantCode: ok,
				wantStatuses: []string{"OK edge.path_/shadow 1/MINUTE remaining=0 reset=1m0s"}},
			{req: request("edge", desc("path", "/shadow")), wantCode: ok,
				wantStatuses: []string{"OK edge.path_/shadow 1/MINUTE remaining=0 reset=1m0s"}},
		},
	}, {
		name: "requests_per_unit 0 refuses everything",
		steps: []step{
			{req: request("edge", desc("path", "/closed")), wantCode: over,
				wantStatuses: []string{"OVER_LIMIT edge.path_/closed 0/MINUTE remaining=0 reset=1m0s"}},
		},
	}, {
		name: "a matched rule drops the rules it replaces",
		steps: []step{
			{req: request("edge", desc("client_id", "c1"), desc("client", "vip")), wantCode: ok,
				wantStatuses: []string{"OK", "OK vip 100/HOUR remaining=99 reset=1h0m0s"}},
			{req: request("edge", desc("client_id", "c1")), wantCode: ok,
				wantStatuses: []string{"OK per_client 5/MINUTE remaining=4 reset=1m0s"}},
		},
	}, {
		name: "nested rule",
		steps: []step{
			{req: request("edge", desc("group", "g", "user", "u")), wantCode: ok,
				wantStatuses: []string{"OK edge.group.user 3/MINUTE remaining=2 reset=1m0s"}},
		},
	}, {
		name: "request hits_addend counts that many, 0 counts one",
		steps: []step{
			{req: &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "a")}, HitsAddend: 0}, wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=1 reset=1m0s"}},
			{req: &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "b")}, HitsAddend: 2}, wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=0 reset=1m0s"}},
			{req: &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "c")}, HitsAddend: 3}, wantCode: over,
				wantStatuses: []string{"OVER_LIMIT edge.remote_address 2/MINUTE remaining=0 reset=1m0s"}},
		},
	}, {
		name: "descriptor hits_addend overrides the request's; 0 only reads",
		steps: []step{
			{req: &rlsv3.RateLimitRequest{Domain: "edge", HitsAddend: 5, Descriptors: []*ratelimitv3.RateLimitDescriptor{withHits(desc("remote_address", "a"), 1)}}, wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=1 reset=1m0s"}},
			{req: request("edge", withHits(desc("remote_address", "a"), 0)), wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=1 reset=1m0s"}},
			{req: request("edge", withHits(desc("remote_address", "a"), 0)), wantCode: ok,
				wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=1 reset=1m0s"}},
		},
	}, {
		name: "limit override replaces the rule's limit and applies without a rule, not in unknown domains",
		steps: []step{
			{req: request("edge", withOverride(desc("path", "/login"), 3, typev3.RateLimitUnit_MINUTE, 0)), wantCode: ok,
				wantStatuses: []string{"OK edge.(override) 3/MINUTE remaining=2 reset=1m0s"}},
			{req: request("edge", withOverride(desc("tenant", "t1", "plan", "pro"), 1, typev3.RateLimitUnit_HOUR, 0)), wantCode: ok,
				wantStatuses: []string{"OK edge.(override) 1/HOUR remaining=0 reset=1h0m0s"}},
			{req: request("edge", withOverride(desc("tenant", "t1", "plan", "pro"), 1, typev3.RateLimitUnit_HOUR, 0)), wantCode: over,
				wantStatuses: []string{"OVER_LIMIT edge.(override) 1/HOUR remaining=0 reset=1h0m0s"}},
			{req: request("nope", withOverride(desc("tenant", "t1"), 1, typev3.RateLimitUnit_HOUR, 0)), wantCode: ok,
				wantStatuses: []string{"OK"}},
		},
	}, {
		name: "limit override with unit_multiplier",
		steps: []step{
			{advance: 10 * time.Second, req: request("edge", withOverride(desc("k", "v"), 3, typev3.RateLimitUnit_SECOND, 30)), wantCode: ok,
				wantStatuses: []string{"OK edge.(override) 3/SECONDx30 remaining=2 reset=20s"}},
		},
	}, {
		name: "token bucket with burst",
		steps: []step{
			{req: request("edge", desc("path", "/bucket")), wantCode: ok,
				wantStatuses: []string{"OK edge.path_/bucket 10/SECOND remaining=3 reset=100ms"}},
			{req: request("edge", withHits(desc("path", "/bucket"), 3)), wantCode: ok,
				wantStatuses: []string{"OK edge.path_/bucket 10/SECOND remaining=0 reset=400ms"}},
			{req: request("edge", desc("path", "/bucket")), wantCode: over,
				wantStatuses: []string{"OVER_LIMIT edge.path_/bucket 10/SECOND remaining=0 reset=400ms"}},
		},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.settings)
			for i, st := range tc.steps {
				e.clock.Advance(st.advance)
				resp := e.call(t, st.req)
				if resp.GetOverallCode() != st.wantCode {
					t.Errorf("step %d: got overall %v, want %v", i, resp.GetOverallCode(), st.wantCode)
				}
				got := fmtStatuses(resp)
				if strings.Join(got, "\n") != strings.Join(st.wantStatuses, "\n") {
					t.Errorf("step %d: got statuses\n  %s\nwant\n  %s", i, strings.Join(got, "\n  "), strings.Join(st.wantStatuses, "\n  "))
				}
			}
		})
	}
}

func TestShouldRateLimitInvalidArgument(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name     string
		settings Settings
		req      *rlsv3.RateLimitRequest
		wantMsg  string
	}{
		{name: "empty domain", req: request("", desc("a", "b")), wantMsg: "empty domain"},
		{name: "no descriptors", req: request("edge"), wantMsg: "no descriptors"},
		{name: "descriptor without entries", req: request("edge", desc("a", "b"), desc()), wantMsg: "descriptor 1 has no entries"},
		{name: "nil descriptor", req: request("edge", nil), wantMsg: "descriptor 0 has no entries"},
		{name: "entry without key", req: request("edge", desc("a", "b", "", "c")), wantMsg: "descriptor 0 entry 1 has an empty key"},
		{name: "too many descriptors", settings: Settings{Bounds: descriptor.Bounds{MaxDescriptors: 1}},
			req: request("edge", desc("a", "b"), desc("a", "c")), wantMsg: "2 descriptors is more than max_descriptors 1"},
		{name: "too many entries", settings: Settings{Bounds: descriptor.Bounds{MaxEntries: 1}},
			req: request("edge", desc("a", "b", "c", "d")), wantMsg: "descriptors[0]: 2 entries is more than max_entries 1"},
		{name: "key too long", req: request("edge", desc(long, "b")), wantMsg: "descriptors[0].entries[0].key: 300 bytes is more than max_key_length 256"},
		{name: "request hits too high", settings: Settings{Bounds: descriptor.Bounds{MaxHitsAddend: 10}},
			req: &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("a", "b")}, HitsAddend: 11}, wantMsg: "hits_addend: 11 is more than max_hits_addend 10"},
		{name: "descriptor hits too high", req: request("edge", withHits(desc("a", "b"), 1<<40)), wantMsg: "descriptors[0].hits_addend: 1099511627776 is more than max_hits_addend 1000000000"},
		{name: "negative hits", req: request("edge", func() *ratelimitv3.RateLimitDescriptor { d := desc("a", "b"); d.IsNegativeHits = true; return d }()),
			wantMsg: "is_negative_hits is not supported"},
		{name: "override without unit", req: request("edge", withOverride(desc("a", "b"), 1, typev3.RateLimitUnit_UNKNOWN, 0)),
			wantMsg: "descriptor 0: limit override has unit UNKNOWN"},
		{name: "override too long", req: request("edge", withOverride(desc("a", "b"), 1, typev3.RateLimitUnit_YEAR, 1<<31)),
			wantMsg: "too long"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.settings)
			_, err := e.client.ShouldRateLimit(context.Background(), tc.req)
			if got := status.Code(err); got != codes.InvalidArgument {
				t.Fatalf("got code %v (%v), want InvalidArgument", got, err)
			}
			if msg := status.Convert(err).Message(); !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("got message %q, want it to contain %q", msg, tc.wantMsg)
			}
			if n := len(e.store.takes()); n != 0 {
				t.Errorf("got %d Take calls, want 0", n)
			}
		})
	}
}

// TestShouldRateLimitLongValuesHashed: a value beyond max_value_length is
// counted under its hash (an error would fail open behind Envoy), one
// counter per distinct value; a value at the bound is counted as sent.
func TestShouldRateLimitLongValuesHashed(t *testing.T) {
	e := newEnv(t, Settings{Bounds: descriptor.Bounds{MaxValueLength: 10}})
	long := strings.Repeat("a", 300)
	e.call(t, request("edge", desc("remote_address", long), desc("remote_address", long+"b"), desc("remote_address", "0123456789")))
	calls := e.store.takes()
	if len(calls) != 1 || len(calls[0].reqs) != 3 {
		t.Fatalf("got Take calls %v, want one of 3 requests", calls)
	}
	rs := calls[0].reqs
	for i, v := range []string{extract.HashValue(long), extract.HashValue(long + "b"), "0123456789"} {
		if !strings.Contains(rs[i].Key, v) || strings.Contains(rs[i].Key, long) {
			t.Errorf("request %d: key %q, want it to hold %q and not the long value", i, rs[i].Key, v)
		}
	}
	// The library's Decide counts it on the same counter.
	var r Result
	if err := e.srv.Decide(context.Background(), "edge", []descriptor.Descriptor{dd("remote_address", long)}, &r); err != nil {
		t.Fatalf("Decide with a long value: %v, want it counted", err)
	}
	calls = e.store.takes()
	if len(calls) != 2 || len(calls[1].reqs) != 1 || calls[1].reqs[0].Key != rs[0].Key {
		t.Errorf("Decide: got Take calls %v, want one more on key %q", calls, rs[0].Key)
	}
}

func TestShouldRateLimitOneTakePerRequest(t *testing.T) {
	for _, mode := range []limiter.Mode{limiter.CountAll, limiter.CountIfAllAllowed} {
		t.Run(fmt.Sprint(mode), func(t *testing.T) {
			e := newEnv(t, Settings{CountMode: mode})
			e.call(t, &rlsv3.RateLimitRequest{Domain: "edge", HitsAddend: 2, Descriptors: []*ratelimitv3.RateLimitDescriptor{
				desc("remote_address", "a"), desc("unknown", "x"), desc("ldap", "l"), withHits(desc("path", "/login"), 1), desc("remote_address", "b"),
			}})
			calls := e.store.takes()
			if len(calls) != 1 {
				t.Fatalf("got %d Take calls, want 1", len(calls))
			}
			c := calls[0]
			if c.mode != mode {
				t.Errorf("got mode %v, want %v", c.mode, mode)
			}
			var hits []int64
			keys := map[string]bool{}
			for _, r := range c.reqs {
				hits = append(hits, r.Hits)
				keys[r.Key] = true
			}
			if fmt.Sprint(hits) != "[2 1 2]" {
				t.Errorf("got hits %v, want [2 1 2] (counted descriptors in request order)", hits)
			}
			if len(keys) != 3 {
				t.Errorf("got %d distinct keys in %v, want 3", len(keys), c.reqs)
			}

			// Nothing to count: no Take at all.
			e.call(t, request("edge", desc("unknown", "x"), desc("ldap", "l")))
			e.call(t, request("nope", desc("remote_address", "a")))
			if n := len(e.store.takes()); n != 1 {
				t.Errorf("got %d Take calls after uncounted requests, want still 1", n)
			}
		})
	}
}

func TestShouldRateLimitCountModes(t *testing.T) {
	tests := []struct {
		name          string
		mode          limiter.Mode
		first         *rlsv3.RateLimitRequest
		wantFirst     rlsv3.RateLimitResponse_Code
		wantRemaining uint32 // remote_address=a's remaining after a second, lone hit
		wantTakes     int
		wantShadow    int // requests of the first Take marked Shadow
	}{{
		name:          "count all counts the admitted descriptor of a refused request",
		mode:          limiter.CountAll,
		first:         request("edge", desc("remote_address", "a"), desc("path", "/closed")),
		wantFirst:     rlsv3.RateLimitResponse_OVER_LIMIT,
		wantRemaining: 0,
		wantTakes:     2,
	}, {
		name:          "count if all allowed counts nothing of a refused request",
		mode:          limiter.CountIfAllAllowed,
		first:         request("edge", desc("remote_address", "a"), desc("path", "/closed")),
		wantFirst:     rlsv3.RateLimitResponse_OVER_LIMIT,
		wantRemaining: 1,
		wantTakes:     2,
	}, {
		name:  "count if all allowed still counts when only a shadow rule refuses",
		mode:  limiter.CountIfAllAllowed,
		first: request("edge", desc("remote_address", "a"), withHits(desc("path", "/shadow"), 2)),
		// The shadow rule refuses 2 hits of 1: the request is admitted, so
		// remote_address is counted, in the same single Take (the shadow
		// request is marked Shadow and does not veto).
		wantFirst:     rlsv3.RateLimitResponse_OK,
		wantRemaining: 0,
		wantTakes:     2,
		wantShadow:    1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Settings{CountMode: tc.mode})
			if got := e.call(t, tc.first).GetOverallCode(); got != tc.wantFirst {
				t.Errorf("first request: got %v, want %v", got, tc.wantFirst)
			}
			resp := e.call(t, request("edge", desc("remote_address", "a")))
			if got := resp.GetStatuses()[0].GetLimitRemaining(); got != tc.wantRemaining {
				t.Errorf("got remaining %d after the second request, want %d", got, tc.wantRemaining)
			}
			takes := e.store.takes()
			if got := len(takes); got != tc.wantTakes {
				t.Errorf("got %d Take calls, want %d", got, tc.wantTakes)
			}
			shadow := 0
			for _, r := range takes[0].reqs {
				if r.Shadow {
					shadow++
				}
			}
			if shadow != tc.wantShadow {
				t.Errorf("first Take: got %d Shadow requests in %+v, want %d", shadow, takes[0].reqs, tc.wantShadow)
			}
		})
	}
}

func TestShouldRateLimitStoreFailure(t *testing.T) {
	req := request("edge", desc("remote_address", "a"), desc("unknown", "x"), desc("path", "/shadow"))
	tests := []struct {
		name         string
		policy       chain.FailurePolicy
		wantErr      codes.Code
		wantCode     rlsv3.RateLimitResponse_Code
		wantStatuses []string
		wantHeaders  string
	}{{
		name:    "envoy",
		policy:  chain.FailurePolicy{Default: chain.FailEnvoy},
		wantErr: codes.Unavailable,
	}, {
		name:     "open",
		policy:   chain.FailurePolicy{Default: chain.FailOpen},
		wantCode: rlsv3.RateLimitResponse_OK,
		wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=2 reset=0s", "OK",
			"OK edge.path_/shadow 1/MINUTE remaining=1 reset=0s"},
		wantHeaders: "X-RateLimit-Limit=2 X-RateLimit-Remaining=2 X-RateLimit-Reset=0 ",
	}, {
		name:     "closed",
		policy:   chain.FailurePolicy{Default: chain.FailClosed},
		wantCode: rlsv3.RateLimitResponse_OVER_LIMIT,
		wantStatuses: []string{"OVER_LIMIT edge.remote_address 2/MINUTE remaining=0 reset=1s", "OK",
			"OK edge.path_/shadow 1/MINUTE remaining=0 reset=1s"},
		wantHeaders: "X-RateLimit-Limit=2 X-RateLimit-Remaining=0 X-RateLimit-Reset=1 Retry-After=1 ",
	}, {
		name:     "per-domain override",
		policy:   chain.FailurePolicy{Default: chain.FailEnvoy, Domains: map[string]chain.FailureMode{"edge": chain.FailOpen}},
		wantCode: rlsv3.RateLimitResponse_OK,
		wantStatuses: []string{"OK edge.remote_address 2/MINUTE remaining=2 reset=0s", "OK",
			"OK edge.path_/shadow 1/MINUTE remaining=1 reset=0s"},
		wantHeaders: "X-RateLimit-Limit=2 X-RateLimit-Remaining=2 X-RateLimit-Reset=0 ",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Settings{Failure: tc.policy, Headers: HeaderSettings{Enabled: true}})
			e.store.fail(errBackend)
			resp, err := e.client.ShouldRateLimit(context.Background(), req)
			if got := status.Code(err); got != tc.wantErr {
				t.Fatalf("got error code %v (%v), want %v", got, err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if resp.GetOverallCode() != tc.wantCode {
				t.Errorf("got overall %v, want %v", resp.GetOverallCode(), tc.wantCode)
			}
			if got := fmtStatuses(resp); strings.Join(got, ",") != strings.Join(tc.wantStatuses, ",") {
				t.Errorf("got statuses %q, want %q", got, tc.wantStatuses)
			}
			var hs strings.Builder
			for _, h := range resp.GetResponseHeadersToAdd() {
				fmt.Fprintf(&hs, "%s=%s ", h.GetKey(), h.GetValue())
			}
			if hs.String() != tc.wantHeaders {
				t.Errorf("got headers %q, want %q", hs.String(), tc.wantHeaders)
			}
		})
	}
}

func TestShouldRateLimitStoreRejects(t *testing.T) {
	e := newEnv(t, Settings{Failure: chain.FailurePolicy{Default: chain.FailOpen}})
	e.store.fail(fmt.Errorf("memstore: %w", limiter.ErrInvalidRequest))
	_, err := e.client.ShouldRateLimit(context.Background(), request("edge", desc("remote_address", "a")))
	if got := status.Code(err); got != codes.Internal {
		t.Errorf("got %v (%v), want Internal: a rejected request is a bug, not an outage", got, err)
	}
}

func TestShouldRateLimitDeadline(t *testing.T) {
	e := newEnv(t, Settings{})
	e.store.fail(context.DeadlineExceeded)
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	// The handler sees the expired deadline through its own context; the
	// client gives up first, so check the handler directly.
	_, err := e.srv.ShouldRateLimit(ctx, request("edge", desc("remote_address", "a")))
	if got := status.Code(err); got != codes.DeadlineExceeded {
		t.Errorf("got %v (%v), want DeadlineExceeded", got, err)
	}
}

// TestStoreFailureWarningThrottled checks that a failing store, called by
// every request, logs one warning per interval (logging.DefaultEvery), and
// that the next one carries the count of those dropped in between.
func TestStoreFailureWarningThrottled(t *testing.T) {
	e := newEnv(t, Settings{Failure: chain.FailurePolicy{Default: chain.FailOpen}})
	var logs bytes.Buffer
	// Set before the first call; the handler is called directly below.
	e.srv.log = slog.New(slog.NewTextHandler(&logs, nil))
	e.srv.warn.Now = e.clock.Now
	e.store.fail(errBackend)
	call := func() {
		t.Helper()
		if _, err := e.srv.ShouldRateLimit(context.Background(), request("edge", desc("remote_address", "a"))); err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
	}
	warnings := func() []string {
		var out []string
		for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			if strings.Contains(l, `msg="rate limit store failed"`) {
				out = append(out, l)
			}
		}
		return out
	}

	for range 5 {
		call()
	}
	e.clock.Advance(logging.DefaultEvery - time.Second)
	call() // still within the interval
	if got := warnings(); len(got) != 1 {
		t.Fatalf("after 6 failures within %v: got %d warnings, want 1:\n%s", logging.DefaultEvery, len(got), logs.String())
	}
	if w := warnings()[0]; strings.Contains(w, "suppressed") || !strings.Contains(w, "failure_mode=open") || !strings.Contains(w, "backend down") {
		t.Errorf("first warning %q: want the error and failure mode, and no suppressed count", w)
	}

	e.clock.Advance(time.Second)
	call()
	got := warnings()
	if len(got) != 2 {
		t.Fatalf("after the interval: got %d warnings, want 2:\n%s", len(got), logs.String())
	}
	if !strings.Contains(got[1], "suppressed=5") {
		t.Errorf("second warning %q: want suppressed=5", got[1])
	}
}

func TestShouldRateLimitHeadersAndBody(t *testing.T) {
	e := newEnv(t, Settings{
		Headers:       HeaderSettings{Enabled: true, Draft: true, ResetHeader: "X-Reset"},
		OverLimitBody: true,
	})
	fmtHeaders := func(resp *rlsv3.RateLimitResponse) string {
		var b strings.Builder
		for _, h := range resp.GetResponseHeadersToAdd() {
			fmt.Fprintf(&b, "%s: %s\n", h.GetKey(), h.GetValue())
		}
		return b.String()
	}
	req := request("edge", desc("path", "/login"), desc("remote_address", "a"), desc("path", "/shadow"), desc("unknown", "u"))

	resp := e.call(t, req)
	want := "X-RateLimit-Limit: 1\nX-RateLimit-Remaining: 0\nX-Reset: 3600\n" +
		"RateLimit-Policy: \"login\";q=1;w=3600, \"edge.remote_address\";q=2;w=60\n" +
		"RateLimit: \"login\";r=0;t=3600, \"edge.remote_address\";r=1;t=60\n"
	if got := fmtHeaders(resp); got != want {
		t.Errorf("admitted: got headers\n%s\nwant\n%s", got, want)
	}
	if resp.RawBody != nil {
		t.Errorf("admitted: got raw_body %q, want none", resp.RawBody)
	}

	e.clock.Advance(10 * time.Minute)
	resp = e.call(t, req)
	want = "X-RateLimit-Limit: 1\nX-RateLimit-Remaining: 0\nX-Reset: 3000\nRetry-After: 3000\n" +
		"RateLimit-Policy: \"login\";q=1;w=3600, \"edge.remote_address\";q=2;w=60\n" +
		"RateLimit: \"login\";r=0;t=3000, \"edge.remote_address\";r=1;t=60\n" +
		"content-type: application/json\n"
	if got := fmtHeaders(resp); got != want {
		t.Errorf("refused: got headers\n%s\nwant\n%s", got, want)
	}
	wantBody := `{"code":"over_limit","domain":"edge","limit":{"name":"login","requests_per_unit":1,"unit":"hour"},"retry_after_seconds":3000}`
	if string(resp.RawBody) != wantBody {
		t.Errorf("refused: got raw_body %s, want %s", resp.RawBody, wantBody)
	}

	// Nothing counted: no headers.
	if resp := e.call(t, request("edge", desc("unknown", "u"))); len(resp.ResponseHeadersToAdd) != 0 {
		t.Errorf("uncounted: got headers %v, want none", resp.ResponseHeadersToAdd)
	}
}

func TestSwap(t *testing.T) {
	e := newEnv(t, Settings{})
	old := e.srv.Snapshot()
	if got := e.call(t, request("edge", desc("new", "x"))).GetStatuses()[0].GetCurrentLimit(); got != nil {
		t.Fatalf("before swap: got limit %v, want none", got)
	}
	rules, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "new", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitSecond, RequestsPerUnit: 7}},
	}}}, descriptor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(rules, Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if prev := e.srv.Swap(snap); prev != old {
		t.Errorf("Swap returned %p, want the previous snapshot %p", prev, old)
	}
	if e.srv.Snapshot() != snap {
		t.Errorf("Snapshot() is not the swapped-in snapshot")
	}
	got := fmtStatuses(e.call(t, request("edge", desc("new", "x"), desc("remote_address", "a"))))
	want := []string{"OK edge.new 7/SECOND remaining=6 reset=1s", "OK"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("after swap: got %q, want %q", got, want)
	}
}

func TestNewSnapshotSettings(t *testing.T) {
	rules := testRules(t)
	tests := []struct {
		name    string
		s       Settings
		wantErr string
	}{
		{name: "zero is valid", s: Settings{}},
		{name: "ratio above 1", s: Settings{NearLimitRatio: 1.5}, wantErr: "near limit ratio"},
		{name: "negative ratio", s: Settings{NearLimitRatio: -1}, wantErr: "near limit ratio"},
		{name: "bad header name", s: Settings{Headers: HeaderSettings{LimitHeader: "X Limit"}}, wantErr: "not a valid HTTP field name"},
		{name: "unknown failure mode", s: Settings{Failure: chain.FailurePolicy{Default: 9}}, wantErr: "unknown failure mode"},
		{name: "unknown domain failure mode", s: Settings{Failure: chain.FailurePolicy{Domains: map[string]chain.FailureMode{"edge": 7}}}, wantErr: `domain "edge": unknown failure mode`},
		{name: "negative fail-closed retry", s: Settings{FailClosedRetryAfter: -time.Second}, wantErr: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			snap, err := NewSnapshot(rules, tc.s, nil)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				got := snap.Settings()
				if got.NearLimitRatio != 0.8 || got.Headers.LimitHeader != DefaultLimitHeader || got.Bounds.MaxDescriptors != 64 {
					t.Errorf("got settings %+v, want defaults filled in", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestConcurrentRequests checks that pooled scratch memory never leaks
// between concurrent requests: each goroutine owns keys and must see
// exactly its own counts.
func TestConcurrentRequests(t *testing.T) {
	e := newEnv(t, Settings{Headers: HeaderSettings{Enabled: true, Draft: true}})
	const workers, calls = 16, 6
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			ip := fmt.Sprintf("10.0.0.%d", w)
			user := fmt.Sprintf("user-%d", w)
			for i := range calls {
				resp, err := e.srv.ShouldRateLimit(context.Background(),
					request("edge", desc("remote_address", ip), desc("group", "g", "user", user)))
				if err != nil {
					errs <- err
					return
				}
				wantIP := "OK edge.remote_address 2/MINUTE remaining=" + fmt.Sprint(max(0, 1-i)) + " reset=1m0s"
				if i >= 2 {
					wantIP = "OVER_LIMIT edge.remote_address 2/MINUTE remaining=0 reset=1m0s"
				}
				if got := fmtStatus(resp.Statuses[0]); got != wantIP {
					errs <- fmt.Errorf("worker %d call %d: got %q, want %q", w, i, got, wantIP)
					return
				}
				wantUserCode := "OK"
				if i >= 3 {
					wantUserCode = "OVER_LIMIT"
				}
				if got := fmtStatus(resp.Statuses[1]); !strings.HasPrefix(got, wantUserCode+" edge.group.user 3/MINUTE") {
					errs <- fmt.Errorf("worker %d call %d: got %q, want %s", w, i, got, wantUserCode)
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestManyDescriptors counts more descriptors in one call than stores keep
// on their stack (memstore: 8), up to the default bound of 64.
func TestManyDescriptors(t *testing.T) {
	e := newEnv(t, Settings{})
	for _, n := range []int{9, 64} {
		var ds []*ratelimitv3.RateLimitDescriptor
		for i := range n {
			ds = append(ds, desc("remote_address", fmt.Sprintf("10.9.%d.%d", n, i)))
		}
		resp, err := e.client.ShouldRateLimit(context.Background(), request("edge", ds...))
		if err != nil {
			t.Fatalf("%d descriptors: %v", n, err)
		}
		if len(resp.GetStatuses()) != n || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
			t.Fatalf("%d descriptors: got %v with %d statuses", n, resp.GetOverallCode(), len(resp.GetStatuses()))
		}
		for i, st := range resp.GetStatuses() {
			if got := fmtStatus(st); got != "OK edge.remote_address 2/MINUTE remaining=1 reset=1m0s" {
				t.Errorf("%d descriptors: status %d: got %q", n, i, got)
			}
		}
	}
}
