// Command rlsload load-tests a RateLimitService, or an ext_authz
// Authorization service, over loopback gRPC: it starts "extauthz serve" and
// a no-op server of both APIs (this binary's noop command, on the same gRPC
// server options), drives each at fixed concurrencies for a fixed duration
// with the same client, and reports throughput and latency percentiles
// side by side. -api authz sends Envoy-shaped CheckRequests instead of
// ShouldRateLimit; -redis URL runs the server's bench rules on a Redis
// backend instead of memory.
//
//	rlsload -server-bin ./bin/extauthz [-api rls|authz] [-concurrency 64,16] [-duration 10s] [-config FILE | -redis URL]
//	rlsload noop [-listen 127.0.0.1:0]
//	rlsload take -redis-addr HOST:PORT [-algorithm A] [-n 1000] [-general | -raw ping|incr]
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "rlsload:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "noop" {
		return noop(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "take" {
		return take(ctx, args[1:], stdout, stderr)
	}
	return drive(ctx, args, stdout, stderr)
}
