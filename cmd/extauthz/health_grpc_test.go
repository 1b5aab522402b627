package main

import (
	"context"
	"errors"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestGRPCHealth: every service follows readiness together (e.g. NOT_SERVING
// until rules_xds's first update, then SERVING), and after Shutdown an
// update changes nothing.
func TestGRPCHealth(t *testing.T) {
	h := health.NewServer()
	h.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	h.SetServingStatus("envoy.service.auth.v3.Authorization", healthpb.HealthCheckResponse_SERVING)
	readyErr := errors.New("no rules yet from the xDS management server")
	g := &grpcHealth{h: h, log: slogDiscard(), serving: true, ready: func() error { return readyErr }}
	status := func(svc string) healthpb.HealthCheckResponse_ServingStatus {
		t.Helper()
		resp, err := h.Check(context.Background(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatus()
	}
	want := func(st healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for _, svc := range []string{"", rlsv3.RateLimitService_ServiceDesc.ServiceName, "envoy.service.auth.v3.Authorization"} {
			if got := status(svc); got != st {
				t.Errorf("service %q: got %v, want %v", svc, got, st)
			}
		}
	}
	g.update()
	want(healthpb.HealthCheckResponse_NOT_SERVING)
	readyErr = nil
	g.update()
	want(healthpb.HealthCheckResponse_SERVING)
	h.Shutdown()
	readyErr = errors.New("backend down")
	g.update()
	want(healthpb.HealthCheckResponse_NOT_SERVING) // Shutdown's, and it stays
	readyErr = nil
	g.update()
	want(healthpb.HealthCheckResponse_NOT_SERVING)
}
