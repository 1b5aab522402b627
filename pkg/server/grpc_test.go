package server

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
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

// panickingRLS panics in every call.
type panickingRLS struct{ noopRLS }

func (panickingRLS) ShouldRateLimit(context.Context, *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	panic("boom")
}

// TestGRPCOptionsInterceptor: the extra interceptor runs outside panic
// recovery, so it sees the INTERNAL answer of a panicking handler.
func TestGRPCOptionsInterceptor(t *testing.T) {
	seen := make(chan codes.Code, 1)
	lis := bufconn.Listen(1 << 20)
	g, _ := NewGRPCServer(GRPCOptions{
		Logger: slog.New(slog.DiscardHandler),
		Interceptor: func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			seen <- status.Code(err)
			return resp, err
		},
	})
	rlsv3.RegisterRateLimitServiceServer(g, panickingRLS{})
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_, err = rlsv3.NewRateLimitServiceClient(conn).ShouldRateLimit(context.Background(), request("edge", desc("k", "v")))
	if status.Code(err) != codes.Internal {
		t.Fatalf("got %v, want Internal", err)
	}
	if got := <-seen; got != codes.Internal {
		t.Errorf("interceptor saw %v, want Internal (it must run outside recovery)", got)
	}
}
