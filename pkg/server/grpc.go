package server

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
)

// streamWorkers is how many goroutines serve calls (grpc.NumStreamWorkers;
// calls beyond that many in flight get a goroutine of their own, as without
// workers). A worker keeps the stack it grew on earlier calls, where a new
// goroutine per call grows its stack anew: with the Redis backend, whose
// client reads deep in the stack, that copying cost 14% of the server's CPU
// under load (BENCHMARKS.md).
const streamWorkers = 256

// GRPCOptions tunes the gRPC server for Envoy, which keeps a few long-lived
// HTTP/2 connections and multiplexes many short calls on them. Zero values
// are the defaults given per field.
type GRPCOptions struct {
	// MaxConcurrentStreams per connection (default 1024). Envoy opens
	// another connection when a connection's limit is reached.
	MaxConcurrentStreams uint32
	// MaxRecvMsgSize in bytes (default 1 MiB; a RateLimitRequest is usually
	// well under 1 KiB, and the ext_authz API may need more for bodies).
	MaxRecvMsgSize int
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it, and KeepaliveTimeout how long it then waits for the
	// ack before closing it (defaults 30s and 10s), so that dead peers are
	// noticed.
	KeepaliveTime    time.Duration
	KeepaliveTimeout time.Duration
	// MinPingInterval is the most often a client may ping, even without
	// calls in flight (default 10s; grpc-go's own default of 5 minutes
	// would close Envoy connections configured with a shorter
	// connection_keepalive).
	MinPingInterval time.Duration
	// MaxConnectionAge closes connections after this long, with
	// MaxConnectionAgeGrace for their calls to finish, so that clients
	// rebalance across replicas (default 0: never).
	MaxConnectionAge      time.Duration
	MaxConnectionAgeGrace time.Duration
	// Creds secure the listener (default: plaintext).
	Creds credentials.TransportCredentials
	// Logger receives recovered panics (default slog.Default()).
	Logger *slog.Logger
}

// NewGRPCServer returns a gRPC server configured by o, with server
// reflection and the standard health service registered. The health server
// is returned so that the caller can set per-service states and call its
// Shutdown when draining; it answers SERVING for the overall ("") service
// from the start. Register API handlers on the server before Serve.
func NewGRPCServer(o GRPCOptions, extra ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	if o.MaxConcurrentStreams == 0 {
		o.MaxConcurrentStreams = 1024
	}
	if o.MaxRecvMsgSize == 0 {
		o.MaxRecvMsgSize = 1 << 20
	}
	if o.KeepaliveTime == 0 {
		o.KeepaliveTime = 30 * time.Second
	}
	if o.KeepaliveTimeout == 0 {
		o.KeepaliveTimeout = 10 * time.Second
	}
	if o.MinPingInterval == 0 {
		o.MinPingInterval = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	kp := keepalive.ServerParameters{Time: o.KeepaliveTime, Timeout: o.KeepaliveTimeout}
	if o.MaxConnectionAge > 0 {
		kp.MaxConnectionAge = o.MaxConnectionAge
		kp.MaxConnectionAgeGrace = o.MaxConnectionAgeGrace
	}
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(o.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(o.MaxRecvMsgSize),
		grpc.KeepaliveParams(kp),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: o.MinPingInterval, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(recoverUnary(o.Logger)),
		grpc.NumStreamWorkers(streamWorkers),
	}
	if o.Creds != nil {
		opts = append(opts, grpc.Creds(o.Creds))
	}
	g := grpc.NewServer(append(opts, extra...)...)
	h := health.NewServer()
	healthpb.RegisterHealthServer(g, h)
	reflection.Register(g)
	return g, h
}

// recoverUnary turns a panicking handler into an INTERNAL error instead of
// a crashed process, and logs the stack.
func recoverUnary(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				log.Error("handler panicked", "method", info.FullMethod, "panic", p, "stack", string(debug.Stack()))
				resp, err = nil, status.Error(codes.Internal, "internal error")
			}
		}()
		return handler(ctx, req)
	}
}
