// Command grpc is a small gRPC service (the standard health service)
// limited by extauthz rules in process: a global per-peer limit and a
// stricter one on /grpc.health.v1.Health/Check.
//
//	go run ./examples/go/grpc --listen 127.0.0.1:8091 --config examples/go/grpc/config.yaml
//
// With --remote HOST:PORT it asks a running extauthz instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/ratelimit/grpclimit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("grpc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8091", "listen address")
	configFile := fs.String("config", "", "extauthz rule file (in-process limiter)")
	remote := fs.String("remote", "", "address of a running extauthz (remote limiter, instead of --config)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lim *ratelimit.Limiter
	var err error
	switch {
	case *remote != "":
		lim, err = ratelimit.Dial(ctx, *remote, ratelimit.RemoteOptions{FailureMode: ratelimit.FailOpen})
	case *configFile != "":
		lim, err = ratelimit.Open(ctx, *configFile)
	default:
		err = errors.New("--config or --remote is required")
	}
	if err != nil {
		return err
	}
	defer lim.Close()

	g, err := newServer(lim)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "listening on %s\n", lis.Addr())
	done := make(chan error, 1)
	go func() { done <- g.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	g.GracefulStop()
	return <-done
}

// newServer is the service: the health service under the global per-peer
// limit, its Check also under its own.
func newServer(lim ratelimit.Decider) (*grpc.Server, error) {
	peerIP := grpclimit.By("remote_address", grpclimit.Peer())
	in, err := grpclimit.New(lim, grpclimit.Options{
		Domain: "grpc",
		Descriptors: [][]grpclimit.Key{
			{peerIP},
			{grpclimit.By("method", grpclimit.Method()), peerIP},
		},
	})
	if err != nil {
		return nil, err
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(in.Unary()), grpc.ChainStreamInterceptor(in.Stream()))
	healthpb.RegisterHealthServer(g, health.NewServer())
	return g, nil
}
