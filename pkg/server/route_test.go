package server

import (
	"context"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// routeRules: ip (per second, default chain), user (per month: durable
// as config resolves chains_by_unit), plan (per hour, durable by its own chain).
func routeRules(t *testing.T) *descriptor.Set {
	t.Helper()
	s, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "ip", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitSecond, RequestsPerUnit: 1}},
		{Key: "user", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitMonth, RequestsPerUnit: 5, Chain: "durable"}},
		{Key: "plan", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitHour, RequestsPerUnit: 7, Chain: "durable"}},
	}}}, descriptor.Options{ChainsByUnit: map[descriptor.Unit]string{descriptor.UnitMonth: "durable"}})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	return s
}

type routeEnv struct {
	srv          *Server
	def, durable *recordingStore
}

func newRouteEnv(t *testing.T, st Settings) *routeEnv {
	t.Helper()
	newMem := func() limiter.Store {
		m, err := memstore.New(memstore.Options{Now: func() time.Time { return testNow }, SweepInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	e := &routeEnv{def: &recordingStore{next: newMem()}, durable: &recordingStore{next: newMem()}}
	snap, err := NewSnapshot(routeRules(t), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = New(Options{Store: e.def, Chains: map[string]limiter.Store{"durable": e.durable}}, snap)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func keysOf(c takeCall) []string {
	var out []string
	for _, r := range c.reqs {
		out = append(out, r.Key)
	}
	return out
}

func TestRouteOneTakePerChainInRequestOrder(t *testing.T) {
	e := newRouteEnv(t, Settings{})
	resp, err := e.srv.ShouldRateLimit(context.Background(), request("edge",
		desc("ip", "a"), desc("user", "u1"), desc("ip", "b"), desc("plan", "gold")))
	if err != nil {
		t.Fatal(err)
	}
	def, dur := e.def.takes(), e.durable.takes()
	if len(def) != 1 || len(dur) != 1 {
		t.Fatalf("takes: default %d, durable %d; want one each", len(def), len(dur))
	}
	if k := keysOf(def[0]); len(k) != 2 || !strings.Contains(k[0], "a") || !strings.Contains(k[1], "b") {
		t.Errorf("default chain keys %q: want ip a then ip b", k)
	}
	if k := keysOf(dur[0]); len(k) != 2 || !strings.Contains(k[0], "u1") || !strings.Contains(k[1], "gold") {
		t.Errorf("durable chain keys %q: want user u1 then plan gold", k)
	}
	// Results go back to their descriptors, in request order.
	wantLimit := []uint32{1, 5, 1, 7}
	wantRemaining := []uint32{0, 4, 0, 6}
	for i, st := range resp.Statuses {
		if st.GetCurrentLimit().GetRequestsPerUnit() != wantLimit[i] || st.LimitRemaining != wantRemaining[i] {
			t.Errorf("status %d: limit %d remaining %d; want %d, %d", i, st.GetCurrentLimit().GetRequestsPerUnit(), st.LimitRemaining, wantLimit[i], wantRemaining[i])
		}
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Errorf("overall %v, want OK", resp.OverallCode)
	}
}

func TestRouteDefaultOnlyRequestSkipsOtherChains(t *testing.T) {
	e := newRouteEnv(t, Settings{})
	if _, err := e.srv.ShouldRateLimit(context.Background(), request("edge", desc("ip", "a"), desc("ip", "b"))); err != nil {
		t.Fatal(err)
	}
	if d, u := len(e.def.takes()), len(e.durable.takes()); d != 1 || u != 0 {
		t.Fatalf("takes: default %d, durable %d; want 1, 0", d, u)
	}
}

// blockingStore waits, in Take, until peer has been called, so a test
// passes only when the two chains are called concurrently.
type blockingStore struct {
	limiter.Store
	self, peer chan struct{}
}

func (b *blockingStore) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	close(b.self)
	select {
	case <-b.peer:
	case <-time.After(5 * time.Second):
		return context.DeadlineExceeded
	}
	return b.Store.Take(ctx, mode, reqs, res)
}

func TestRouteCallsChainsConcurrently(t *testing.T) {
	e := newRouteEnv(t, Settings{})
	a, b := make(chan struct{}), make(chan struct{})
	e.srv.store = &blockingStore{Store: e.def, self: a, peer: b}
	e.srv.chains["durable"] = &blockingStore{Store: e.durable, self: b, peer: a}
	resp, err := e.srv.ShouldRateLimit(context.Background(), request("edge", desc("ip", "a"), desc("user", "u1")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("overall %v: a chain waited for the other", resp.OverallCode)
	}
}

func TestRouteFailureModePerChain(t *testing.T) {
	for _, tc := range []struct {
		mode        chain.FailureMode
		wantOverall rlsv3.RateLimitResponse_Code
		wantUser    rlsv3.RateLimitResponse_Code
	}{
		{chain.FailOpen, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK},
		{chain.FailClosed, rlsv3.RateLimitResponse_OVER_LIMIT, rlsv3.RateLimitResponse_OVER_LIMIT},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			e := newRouteEnv(t, Settings{Failure: chain.FailurePolicy{Default: tc.mode}})
			e.durable.fail(errBackend)
			resp, err := e.srv.ShouldRateLimit(context.Background(), request("edge", desc("ip", "a"), desc("user", "u1")))
			if err != nil {
				t.Fatal(err)
			}
			if resp.OverallCode != tc.wantOverall || resp.Statuses[1].Code != tc.wantUser {
				t.Errorf("overall %v, user %v; want %v, %v", resp.OverallCode, resp.Statuses[1].Code, tc.wantOverall, tc.wantUser)
			}
			// The default chain decided its descriptor: counted, OK.
			if st := resp.Statuses[0]; st.Code != rlsv3.RateLimitResponse_OK || st.LimitRemaining != 0 {
				t.Errorf("ip: %v remaining %d; want OK with 0 remaining (counted)", st.Code, st.LimitRemaining)
			}
		})
	}
	t.Run("envoy", func(t *testing.T) {
		e := newRouteEnv(t, Settings{})
		e.durable.fail(errBackend)
		_, err := e.srv.ShouldRateLimit(context.Background(), request("edge", desc("ip", "a"), desc("user", "u1")))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("err %v, want Unavailable", err)
		}
	})
}

// CountIfAllAllowed is exact within a chain but best effort across chains:
// a refusal in the default chain does not un-count the durable one.
func TestRouteCountIfAllAllowedAcrossChains(t *testing.T) {
	e := newRouteEnv(t, Settings{CountMode: limiter.CountIfAllAllowed})
	ctx := context.Background()
	if _, err := e.srv.ShouldRateLimit(ctx, request("edge", desc("ip", "a"))); err != nil {
		t.Fatal(err)
	}
	resp, err := e.srv.ShouldRateLimit(ctx, request("edge", desc("ip", "a"), desc("user", "u1"), desc("ip", "a")))
	if err != nil {
		t.Fatal(err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("overall %v, want OVER_LIMIT (ip a is at its limit)", resp.OverallCode)
	}
	if got := resp.Statuses[1].LimitRemaining; got != 4 {
		t.Errorf("user u1 remaining %d, want 4: the durable chain counted its part", got)
	}
}

func TestNewRefusesUnknownChain(t *testing.T) {
	snap, err := NewSnapshot(routeRules(t), Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Store: &recordingStore{}}, snap)
	if err == nil || !strings.Contains(err.Error(), `backend chain "durable"`) {
		t.Fatalf("New: %v, want an error naming chain durable", err)
	}
}

func TestNewRefusesUnknownOverrideChain(t *testing.T) {
	rules, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge"}}, descriptor.Options{ChainsByUnit: map[descriptor.Unit]string{descriptor.UnitYear: "durable"}})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(rules, Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = New(Options{Store: &recordingStore{}}, snap)
	if err == nil || !strings.Contains(err.Error(), `unit year use backend chain "durable"`) {
		t.Fatalf("New: %v, want an error naming the year overrides' chain", err)
	}
}
