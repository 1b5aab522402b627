package server

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMaxRecvMsgSize(t *testing.T) {
	e := newEnv(t, Settings{}) // default 1 MiB
	_, err := e.client.ShouldRateLimit(context.Background(), request("edge", desc("remote_address", strings.Repeat("x", 2<<20))))
	if got := status.Code(err); got != codes.ResourceExhausted {
		t.Errorf("2 MiB request: got %v (%v), want ResourceExhausted", got, err)
	}
}

func TestRecoverUnary(t *testing.T) {
	var logs strings.Builder
	intercept := recoverUnary(slog.New(slog.NewTextHandler(&logs, nil)))
	info := &grpc.UnaryServerInfo{FullMethod: "/test/Panic"}
	resp, err := intercept(context.Background(), nil, info, func(context.Context, any) (any, error) {
		panic("boom")
	})
	if resp != nil || status.Code(err) != codes.Internal {
		t.Errorf("got %v, %v; want nil, Internal", resp, err)
	}
	if !strings.Contains(logs.String(), "handler panicked") || !strings.Contains(logs.String(), "boom") {
		t.Errorf("got log %q, want the panic logged", logs.String())
	}
	resp, err = intercept(context.Background(), nil, info, func(context.Context, any) (any, error) { return "ok", nil })
	if resp != "ok" || err != nil {
		t.Errorf("no panic: got %v, %v", resp, err)
	}
}
