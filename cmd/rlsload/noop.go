package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"

	"github.com/extauthz/extauthz/pkg/server"
)

// noopServer answers every request OK, with one bare OK status per
// descriptor: the least a RateLimitService can do. It runs on the same
// gRPC server options as extauthz, so the comparison isolates the cost of
// deciding.
type noopServer struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (noopServer) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	n := len(req.GetDescriptors())
	sts := make([]rlsv3.RateLimitResponse_DescriptorStatus, n)
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, n)}
	for i := range sts {
		sts[i].Code = rlsv3.RateLimitResponse_OK
		resp.Statuses[i] = &sts[i]
	}
	return resp, nil
}

// noop serves the no-op RateLimitService and Authorization (Check) until
// ctx is done. It prints "listening ADDR" once it accepts connections.
func noop(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("noop", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:0", "gRPC listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	g, _ := server.NewGRPCServer(server.GRPCOptions{})
	rlsv3.RegisterRateLimitServiceServer(g, noopServer{})
	authv3.RegisterAuthorizationServer(g, noopAuthz{})
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	fmt.Fprintln(stdout, "listening", lis.Addr())
	select {
	case <-ctx.Done():
		g.Stop()
		return nil
	case err := <-errc:
		return err
	}
}
