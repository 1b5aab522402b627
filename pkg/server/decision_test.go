package server

import (
	"context"
	"strconv"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

func dd(kv ...string) descriptor.Descriptor {
	var d descriptor.Descriptor
	for i := 0; i+1 < len(kv); i += 2 {
		d = append(d, descriptor.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

// TestDecideMatchesShouldRateLimit: Decide and the RateLimitService share
// one decision (and one counter): alternating calls count together, and
// each answers what the other would.
func TestDecideMatchesShouldRateLimit(t *testing.T) {
	e := newEnv(t, Settings{Headers: HeaderSettings{Enabled: true}})
	ctx := context.Background()
	var r Result
	// remote_address: 2 per minute. Call 1 by Decide, 2 by RLS, 3 by Decide.
	if err := e.srv.Decide(ctx, "edge", []descriptor.Descriptor{dd("remote_address", "1.2.3.4")}, &r); err != nil {
		t.Fatal(err)
	}
	want := Status{Counted: true, Allowed: true, Rule: "edge.remote_address", Limit: limiter.Limit{Requests: 2, Period: time.Minute}, Remaining: 1, Reset: time.Minute}
	if !r.Allowed || r.Failed || len(r.Statuses) != 1 || r.Statuses[0] != want {
		t.Fatalf("first Decide: got %+v, want allowed with %+v", r, want)
	}
	if resp := e.call(t, request("edge", desc("remote_address", "1.2.3.4"))); resp.OverallCode != rlsv3.RateLimitResponse_OK || resp.Statuses[0].LimitRemaining != 0 {
		t.Fatalf("RLS after one Decide: got %v, want OK with 0 remaining", resp)
	}
	if err := e.srv.Decide(ctx, "edge", []descriptor.Descriptor{dd("remote_address", "1.2.3.4")}, &r); err != nil {
		t.Fatal(err)
	}
	if r.Allowed || r.Statuses[0].Allowed || r.RetryAfter != time.Minute || r.Statuses[0].RetryAfter != time.Minute {
		t.Fatalf("third call: got %+v, want refused with RetryAfter 1m", r)
	}
	resp := e.call(t, request("edge", desc("remote_address", "1.2.3.4")))
	var retry string
	for _, h := range resp.ResponseHeadersToAdd {
		if h.Key == retryAfterHeader {
			retry = h.Value
		}
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT || retry != strconv.Itoa(int(r.RetryAfter/time.Second)) {
		t.Errorf("RLS: got %v Retry-After %q, want OVER_LIMIT and %v", resp.OverallCode, retry, r.RetryAfter)
	}
}

func TestDecideStatuses(t *testing.T) {
	e := newEnv(t, Settings{})
	ctx := context.Background()
	var r Result
	r.Statuses = make([]Status, 8) // reused, resized
	ds := []descriptor.Descriptor{
		dd("path", "/shadow"), dd("path", "/unknown"), dd("ldap", "x"),
		dd("client", "vip"), dd("client_id", "c1"), dd("path", "/bucket"),
	}
	for range 2 {
		if err := e.srv.Decide(ctx, "edge", ds, &r); err != nil {
			t.Fatal(err)
		}
	}
	if !r.Allowed || len(r.Statuses) != len(ds) {
		t.Fatalf("got %+v, want allowed with %d statuses", r, len(ds))
	}
	sh := r.Statuses[0]
	if !sh.Counted || !sh.Shadow || !sh.Allowed || sh.Remaining != 0 {
		t.Errorf("shadow over its limit: got %+v, want counted, shadow, allowed, 0 remaining", sh)
	}
	for i, name := range []string{"unmatched", "unlimited", "", "replaced"} {
		if name == "" {
			continue
		}
		if r.Statuses[i+1].Counted {
			t.Errorf("%s: got %+v, want not counted", name, r.Statuses[i+1])
		}
	}
	if vip := r.Statuses[3]; !vip.Counted || vip.Rule != "vip" || vip.Remaining != 98 {
		t.Errorf("vip: got %+v, want rule vip, 98 remaining", vip)
	}
	if b := r.Statuses[5]; b.Limit.Burst != 4 || b.Limit.Algorithm != limiter.TokenBucket || b.Remaining != 2 {
		t.Errorf("bucket: got %+v, want burst 4 token bucket, 2 remaining", b)
	}
}

func TestDecideErrors(t *testing.T) {
	e := newEnv(t, Settings{})
	var r Result
	for name, tc := range map[string]struct {
		domain string
		ds     []descriptor.Descriptor
	}{
		"empty domain":   {"", []descriptor.Descriptor{dd("a", "b")}},
		"no descriptors": {"edge", nil},
		"no entries":     {"edge", []descriptor.Descriptor{{}}},
		"empty key":      {"edge", []descriptor.Descriptor{dd("", "v")}},
	} {
		err := e.srv.Decide(context.Background(), tc.domain, tc.ds, &r)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %v, want InvalidArgument", name, err)
		}
	}
}

func TestDecideFailureMode(t *testing.T) {
	for _, tc := range []struct {
		mode        chain.FailureMode
		wantCode    codes.Code
		wantAllowed bool
	}{
		{chain.FailEnvoy, codes.Unavailable, false},
		{chain.FailOpen, codes.OK, true},
		{chain.FailClosed, codes.OK, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			e := newEnv(t, Settings{Failure: chain.FailurePolicy{Default: tc.mode}, FailClosedRetryAfter: 7 * time.Second})
			e.store.fail(errBackend)
			var r Result
			err := e.srv.Decide(context.Background(), "edge", []descriptor.Descriptor{dd("remote_address", "x")}, &r)
			if status.Code(err) != tc.wantCode {
				t.Fatalf("got %v, want %v", err, tc.wantCode)
			}
			if err != nil {
				return
			}
			if !r.Failed || r.Allowed != tc.wantAllowed {
				t.Errorf("got %+v, want failed, allowed %v", r, tc.wantAllowed)
			}
			if !tc.wantAllowed && r.RetryAfter != 7*time.Second {
				t.Errorf("closed: got RetryAfter %v, want 7s", r.RetryAfter)
			}
		})
	}
}

func TestDecideAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	e := newEnv(t, Settings{})
	// The memstore itself, without the recording wrapper (which allocates).
	srv, err := New(Options{Store: e.mem}, e.srv.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	ds := []descriptor.Descriptor{dd("client_id", "c1"), dd("path", "/unknown")}
	var r Result
	ctx := context.Background()
	_ = srv.Decide(ctx, "edge", ds, &r)
	if n := testing.AllocsPerRun(100, func() { _ = srv.Decide(ctx, "edge", ds, &r) }); n > 0 {
		t.Errorf("Decide allocates %v times per call, want 0", n)
	}
}
