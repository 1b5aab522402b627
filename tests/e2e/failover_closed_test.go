package e2e

import (
	"context"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestFailoverNoBackend: with the only backend down, each domain's
// failure_mode answers: closed → OVER_LIMIT, open → OK, envoy → gRPC
// UNAVAILABLE (so that Envoy's failure_mode_deny decides).
func TestFailoverNoBackend(t *testing.T) {
	dead := FreeAddr(t) // nothing listens there
	p := startFailover(t, failoverConfig(dead, false, `failure_mode: closed
domain_failure_modes:
  open_domain: open
  envoy_domain: envoy
readiness: always
`))
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	call := func(domain string) (*rlsv3.RateLimitResponse, time.Duration, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := rls.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: domain, Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("client", "x")}})
		return resp, time.Since(start), err
	}

	for i := range 5 { // the first calls fail on the backend, the later ones on its open breaker
		resp, lat, err := call("failover")
		if err != nil {
			t.Fatalf("closed, call %d: got error %v, want OVER_LIMIT", i, err)
		}
		if got := resp.GetOverallCode(); got != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Errorf("closed, call %d: got %v, want OVER_LIMIT", i, got)
		}
		if st := resp.GetStatuses(); len(st) != 1 || st[0].GetCode() != rlsv3.RateLimitResponse_OVER_LIMIT {
			t.Errorf("closed, call %d: got statuses %v, want one OVER_LIMIT", i, st)
		}
		t.Logf("fail-closed call %d: %v in %v", i, resp.GetOverallCode(), lat.Round(time.Microsecond))
	}

	resp, lat, err := call("open_domain")
	if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
		t.Errorf("open: got %v, %v; want OK", resp.GetOverallCode(), err)
	}
	t.Logf("fail-open: %v in %v", resp.GetOverallCode(), lat.Round(time.Microsecond))

	_, lat, err = call("envoy_domain")
	if status.Code(err) != codes.Unavailable {
		t.Errorf("envoy: got %v, want code Unavailable", err)
	}
	t.Logf("fail-envoy: %v in %v", status.Code(err), lat.Round(time.Microsecond))
}
