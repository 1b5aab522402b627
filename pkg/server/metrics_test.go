package server

import (
	"context"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestMetrics(t *testing.T) {
	e := newEnv(t, Settings{NearLimitRatio: 0.5})
	for _, req := range []*rlsv3.RateLimitRequest{
		request("edge", desc("remote_address", "a")),                                       // ok (1 of 2 used: near, ratio 0.5)
		request("edge", desc("remote_address", "b"), desc("client_id", "c")),               // near_limit, ok
		request("edge", desc("path", "/closed")),                                           // over_limit
		request("edge", desc("path", "/shadow")), request("edge", desc("path", "/shadow")), // ok (1/1 used: near), shadow
		request("edge", desc("detailed", "v1")),                           // detailed label
		request("edge", desc("unknown", "x")),                             // no decision
		request("secret-domain-from-client", desc("remote_address", "a")), // _unknown domain
	} {
		e.call(t, req)
	}
	if _, err := e.client.ShouldRateLimit(context.Background(), request("", desc("a", "b"))); err == nil {
		t.Fatal("empty domain: got no error")
	}

	wantRequests := `
# HELP extauthz_requests_total Requests answered, by API, domain and code (ok, over_limit or the gRPC error).
# TYPE extauthz_requests_total counter
extauthz_requests_total{api="ratelimit",code="invalid_argument",domain="_unknown"} 1
extauthz_requests_total{api="ratelimit",code="ok",domain="_unknown"} 1
extauthz_requests_total{api="ratelimit",code="ok",domain="edge"} 6
extauthz_requests_total{api="ratelimit",code="over_limit",domain="edge"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(wantRequests), "extauthz_requests_total"); err != nil {
		t.Error(err)
	}
	wantDecisions := `
# HELP extauthz_rule_decisions_total Rule decisions, by domain, rule and outcome (ok, near_limit, over_limit, shadow).
# TYPE extauthz_rule_decisions_total counter
extauthz_rule_decisions_total{domain="edge",outcome="near_limit",rule="edge.path_/shadow"} 1
extauthz_rule_decisions_total{domain="edge",outcome="near_limit",rule="edge.remote_address"} 2
extauthz_rule_decisions_total{domain="edge",outcome="ok",rule="edge.client_id"} 1
extauthz_rule_decisions_total{domain="edge",outcome="ok",rule="edge.detailed_v1"} 1
extauthz_rule_decisions_total{domain="edge",outcome="over_limit",rule="edge.path_/closed"} 1
extauthz_rule_decisions_total{domain="edge",outcome="shadow",rule="edge.path_/shadow"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(wantDecisions), "extauthz_rule_decisions_total"); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(e.srv.metrics.duration); got != 3 {
		t.Errorf("got %d duration series, want 3 (ok, over_limit, invalid_argument)", got)
	}

	e.store.fail(errBackend)
	if _, err := e.client.ShouldRateLimit(context.Background(), request("edge", desc("remote_address", "z"))); err == nil {
		t.Fatal("store failure: got no error")
	}
	if got := testutil.ToFloat64(e.srv.metrics.failures.WithLabelValues("ratelimit", "unavailable")); got != 1 {
		t.Errorf("got %v store failures answered unavailable, want 1", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues("ratelimit", "edge", "unavailable")); got != 1 {
		t.Errorf("got %v unavailable requests, want 1", got)
	}

	problems, err := testutil.GatherAndLint(e.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// TestMetricsSurviveSwap checks that a reload resets no counter.
func TestMetricsSurviveSwap(t *testing.T) {
	e := newEnv(t, Settings{})
	e.call(t, request("edge", desc("client_id", "c")))
	snap, err := NewSnapshot(testRules(t), Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Swap(snap)
	e.call(t, request("edge", desc("client_id", "c")))
	if got := testutil.ToFloat64(e.srv.metrics.decisions.WithLabelValues("edge", "edge.client_id", "ok")); got != 2 {
		t.Errorf("got %v decisions across the swap, want 2", got)
	}
	if got := testutil.ToFloat64(e.srv.metrics.requests.WithLabelValues("ratelimit", "edge", "ok")); got != 2 {
		t.Errorf("got %v requests across the swap, want 2", got)
	}
}

// TestMetricsNonUTF8Value: a request value that is not valid UTF-8 (as
// Envoy may send from a header's raw bytes; Envoy does not check) under a
// detailed_metric rule is counted and labelled with the invalid bytes
// replaced, instead of panicking in labelling after counting (an INTERNAL
// answer that failure_mode_allow let through). The handler is called in
// process: grpc-go's codec would reject the string before it.
func TestMetricsNonUTF8Value(t *testing.T) {
	e := newEnv(t, Settings{})
	for range 11 {
		_, err := e.srv.ShouldRateLimit(context.Background(), request("edge", desc("detailed", "a\xffb\xc3")))
		if err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
	}
	resp, err := e.srv.ShouldRateLimit(context.Background(), request("edge", desc("detailed", "a\xffb\xc3")))
	if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Fatalf("12th request of 10/minute: got %v, %v, want OVER_LIMIT", resp.GetOverallCode(), err)
	}
	want := `
# HELP extauthz_rule_decisions_total Rule decisions, by domain, rule and outcome (ok, near_limit, over_limit, shadow).
# TYPE extauthz_rule_decisions_total counter
extauthz_rule_decisions_total{domain="edge",outcome="near_limit",rule="edge.detailed_a�b�"} 3
extauthz_rule_decisions_total{domain="edge",outcome="ok",rule="edge.detailed_a�b�"} 7
extauthz_rule_decisions_total{domain="edge",outcome="over_limit",rule="edge.detailed_a�b�"} 2
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "extauthz_rule_decisions_total"); err != nil {
		t.Error(err)
	}
}
