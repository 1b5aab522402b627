package main

import (
	"context"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
)

func TestNoopServer(t *testing.T) {
	reqs := buildRequests(options{keys: 3, descriptors: 2, domain: "bench"})
	if len(reqs) != 3 || len(reqs[2].Descriptors) != 2 || reqs[2].Descriptors[0].Entries[0].Value != "10.0.0.2" {
		t.Fatalf("got requests %v, want 3 with 2 descriptors each", reqs)
	}
	resp, err := noopServer{}.ShouldRateLimit(context.Background(), reqs[0])
	if err != nil {
		t.Fatal(err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OK || len(resp.Statuses) != 2 || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OK {
		t.Errorf("got %v, want OK with 2 OK statuses", resp)
	}
}

func TestMedian(t *testing.T) {
	rs := []runResult{{rps: 30, p50: 3}, {rps: 10, p50: 1}, {rps: 20, p50: 2}}
	if got := median(rs); got.rps != 20 || got.p50 != 2*time.Nanosecond {
		t.Errorf("got %+v, want the 20 req/s run", got)
	}
	if got := median(nil); got.rps != 0 {
		t.Errorf("median of nothing: got %+v", got)
	}
}
