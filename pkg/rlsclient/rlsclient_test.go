package rlsclient_test

import (
	"context"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/pkg/rlsclient"
	"github.com/extauthz/extauthz/pkg/rlsclient/rlstest"
	"github.com/extauthz/extauthz/pkg/server"
)

func request(ip string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "web", Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: ip}}},
	}}
}

func TestShouldRateLimit(t *testing.T) {
	srv := rlstest.Start(t, "testdata/config.yaml", server.Settings{})
	c, err := rlsclient.Dial(srv.Addr, rlsclient.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	// per-ip allows 3 a minute.
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		resp, err := c.ShouldRateLimit(ctx, request("192.0.2.1"))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.OverallCode != want {
			t.Fatalf("call %d: code %v, want %v", i, resp.OverallCode, want)
		}
		if got := resp.Statuses[0].CurrentLimit.GetName(); got != "per-ip" {
			t.Errorf("call %d: limit name %q, want per-ip", i, got)
		}
	}
	// The service's own errors come back as they are.
	_, err = c.ShouldRateLimit(ctx, &rlsv3.RateLimitRequest{Domain: "web"})
	if status.Code(err) != codes.InvalidArgument || rlsclient.Unavailable(err) {
		t.Errorf("empty request: %v, want InvalidArgument, not Unavailable", err)
	}
}

func TestServerDown(t *testing.T) {
	c, err := rlsclient.Dial(rlstest.DownAddr(t), rlsclient.Options{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ShouldRateLimit(context.Background(), request("192.0.2.1"))
	if !rlsclient.Unavailable(err) {
		t.Errorf("server down: %v, want an Unavailable error", err)
	}
}

func TestTimeout(t *testing.T) {
	srv := rlstest.Start(t, "testdata/config.yaml", server.Settings{})
	c, err := rlsclient.Dial(srv.Addr, rlsclient.Options{Timeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.ShouldRateLimit(context.Background(), request("192.0.2.1"))
	if status.Code(err) != codes.DeadlineExceeded || !rlsclient.Unavailable(err) {
		t.Errorf("1ns timeout: %v, want DeadlineExceeded", err)
	}
}

func TestDialErrors(t *testing.T) {
	if _, err := rlsclient.Dial("", rlsclient.Options{}); err == nil {
		t.Error("empty address: no error")
	}
	c, err := rlsclient.Dial("127.0.0.1:1", rlsclient.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := c.Close(); err == nil {
		t.Errorf("second Close: %v, want an error", err)
	}
}
