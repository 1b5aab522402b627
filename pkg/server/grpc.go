package server

import (
	"context"
	"errors"
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

	"github.com/extauthz/extauthz/pkg/field"
)

// streamWorkers is how many goroutines serve calls (grpc.NumStreamWorkers;
// calls beyond that many in flight get a goroutine of their own, as without
// workers). A worker keeps the stack it grew on earlier calls, where a new
// goroutine per call grows its stack anew: with the Redis backend, whose
// client reads deep in the stack, that copying cost 14% of the server's CPU
// under load (BENCHMARKS.md).
const streamWorkers = 256

// GRPCSettings tune the gRPC server for Envoy, which keeps a few
// long-lived HTTP/2 connections and multiplexes many short calls on them.
// Zero values are the defaults given per field. It is the server file's
// grpc section (config embeds it).
type GRPCSettings struct {
	// MaxConcurrentStreams per connection (default 1024). Envoy opens
	// another connection when a connection's limit is reached.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// KeepaliveTime is how long a connection may be silent before the
	// server pings it, and KeepaliveTimeout how long it then waits for the
	// ack before closing it (defaults 30s and 10s), so that dead peers are
	// noticed.
	KeepaliveTime    time.Duration `yaml:"keepalive_time"`
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`
	// MinPingInterval is the most often a client may ping, even without
	// calls in flight (default 10s; grpc-go's own default of 5 minutes
	// would close Envoy connections configured with a shorter
	// connection_keepalive). Keep it at or below Envoy's
	// connection_keepalive interval.
	MinPingInterval time.Duration `yaml:"min_ping_interval"`
	// MaxConnectionAge closes connections after this long, with
	// MaxConnectionAgeGrace for their calls to finish, so that clients
	// rebalance across replicas (default 0: never).
	MaxConnectionAge      time.Duration `yaml:"max_connection_age"`
	MaxConnectionAgeGrace time.Duration `yaml:"max_connection_age_grace"`
}

// Defaults of GRPCSettings and GRPCOptions.
const (
	DefaultMaxConcurrentStreams = 1024
	DefaultKeepaliveTime        = 30 * time.Second
	DefaultKeepaliveTimeout     = 10 * time.Second
	DefaultMinPingInterval      = 10 * time.Second
	DefaultMaxRecvMsgSize       = 1 << 20
)

// WithDefaults returns g with zero values replaced by the defaults.
func (g GRPCSettings) WithDefaults() GRPCSettings {
	if g.MaxConcurrentStreams == 0 {
		g.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	for _, d := range g.durations() {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	return g
}

// Validate reports negative durations and a grace without an age, as
// *field.Error values with paths such as "keepalive_time".
func (g *GRPCSettings) Validate() error {
	var errs []error
	for _, d := range g.durations() {
		if *d.v < 0 {
			errs = append(errs, field.Errorf(d.name, "%v is negative: expected a duration such as 30s (0: default)", *d.v))
		}
	}
	if g.MaxConnectionAgeGrace > 0 && g.MaxConnectionAge == 0 {
		errs = append(errs, field.Errorf("max_connection_age_grace", "applies only with max_connection_age: set both, or neither"))
	}
	return errors.Join(errs...)
}

type durationSetting struct {
	name string
	v    *time.Duration
	def  time.Duration
}

func (g *GRPCSettings) durations() []durationSetting {
	return []durationSetting{
		{"keepalive_time", &g.KeepaliveTime, DefaultKeepaliveTime},
		{"keepalive_timeout", &g.KeepaliveTimeout, DefaultKeepaliveTimeout},
		{"min_ping_interval", &g.MinPingInterval, DefaultMinPingInterval},
		{"max_connection_age", &g.MaxConnectionAge, 0},
		{"max_connection_age_grace", &g.MaxConnectionAgeGrace, 0},
	}
}

// GRPCOptions configure NewGRPCServer. Zero values are the defaults given
// per field.
type GRPCOptions struct {
	GRPCSettings
	// MaxRecvMsgSize in bytes (default 1 MiB; a RateLimitRequest is usually
	// well under 1 KiB, and the ext_authz API may need more for bodies).
	MaxRecvMsgSize int
	// Creds secure the listener (default: plaintext).
	Creds credentials.TransportCredentials
	// Logger receives recovered panics (default slog.Default()).
	Logger *slog.Logger
	// Interceptor, when set, runs around every unary call, outside panic
	// recovery (tracing.Provider.Interceptor; nil: none).
	Interceptor grpc.UnaryServerInterceptor
}

// NewGRPCServer returns a gRPC server configured by o, with server
// reflection and the standard health service registered. The health server
// is returned so that the caller can set per-service states and call its
// Shutdown when draining; it answers SERVING for the overall ("") service
// from the start. Register API handlers on the server before Serve.
func NewGRPCServer(o GRPCOptions, extra ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	o.GRPCSettings = o.GRPCSettings.WithDefaults()
	if o.MaxRecvMsgSize == 0 {
		o.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	kp := keepalive.ServerParameters{Time: o.KeepaliveTime, Timeout: o.KeepaliveTimeout}
	if o.MaxConnectionAge > 0 {
		kp.MaxConnectionAge = o.MaxConnectionAge
		kp.MaxConnectionAgeGrace = o.MaxConnectionAgeGrace
	}
	unary := []grpc.UnaryServerInterceptor{recoverUnary(o.Logger)}
	if o.Interceptor != nil {
		unary = []grpc.UnaryServerInterceptor{o.Interceptor, unary[0]} // the first is outermost
	}
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(o.MaxConcurrentStreams),
		grpc.MaxRecvMsgSize(o.MaxRecvMsgSize),
		grpc.KeepaliveParams(kp),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: o.MinPingInterval, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(unary...),
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ForceServerCodecV2(newUTF8Codec()),
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
