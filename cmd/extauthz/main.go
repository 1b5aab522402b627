// Command extauthz is a rate-limiting sidecar for Envoy: it serves Envoy's
// RateLimitService over gRPC from envoyproxy/ratelimit-format rules.
//
//	extauthz serve --config FILE [--grpc-addr HOST:PORT] [--http-addr HOST:PORT]
//	extauthz validate --config FILE
//	extauthz explain --config FILE --domain D --descriptor k=v[,k=v...] [--descriptor ...]
//	extauthz explain --config FILE [--ip IP] [--header name:value ...] [--method M] [--host H] --path P
//	extauthz health --config FILE [--timeout D]
//	extauthz top [--addr HOST:PORT|URL] [--token-file F] [--interval 2s] [--window 5m] [--once]
//	extauthz check [--addr HOST:PORT] --domain D --descriptor k=v[,k=v...] [--descriptor ...] [--hits N] [--json]
//	extauthz version
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(exitCode(run(context.Background(), os.Args[1:], os.Getenv, os.Stdout, os.Stderr), os.Stderr))
}
