package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
)

// LocalOptions configures an in-process Limiter. Zero values are the
// documented defaults.
type LocalOptions struct {
	// Registerer receives the extauthz_* decision metrics, as the server
	// exports them (default: a private registry, i.e. not exported).
	Registerer prometheus.Registerer
	// Logger receives store-failure warnings (default slog.Default()).
	Logger *slog.Logger
}

// Open returns an in-process Limiter over the extauthz server file at path:
// its domains (inline and rules_dir), count mode, bounds and failure mode
// (failure_mode envoy, the default, makes Decide return an error when the
// store fails; open and closed answer). Listen addresses, TLS, admin and
// ext_authz settings are ignored.
//
// Backends: only a single memory backend is supported for now (see New).
func Open(ctx context.Context, path string) (*Limiter, error) {
	cfg, err := config.LoadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	return New(ctx, cfg, LocalOptions{})
}

// New returns an in-process Limiter over a loaded config.
//
// Unstable: New takes pkg/config's Config, whose shape follows the server
// file and may change. The backends are built here for now: a single memory
// backend only; Redis backends and failover chains need the server's
// backend wiring, which is not exported yet.
func New(ctx context.Context, cfg *config.Config, o LocalOptions) (*Limiter, error) {
	if cfg == nil || cfg.Rules == nil {
		return nil, errors.New("ratelimit: config without rules")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	snap, err := server.NewSnapshot(cfg.Rules, localSettings(cfg), nil)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	mem, err := memoryBackend(cfg)
	if err != nil {
		return nil, err
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	srv, err := server.New(server.Options{Store: mem, Metrics: server.NewMetrics(reg), Logger: o.Logger}, snap)
	if err != nil {
		_ = mem.Close()
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	return &Limiter{rls: srv, rules: cfg.Rules, closers: []func() error{mem.Close}}, nil
}

// memoryBackend builds the config's backend, which must be a lone memory
// backend (the default).
func memoryBackend(cfg *config.Config) (*memstore.Store, error) {
	var o memstore.Options
	switch {
	case len(cfg.Backends) == 0:
	case len(cfg.Backends) == 1 && cfg.Backends[0].Type == "memory":
		o = cfg.Backends[0].Memory
	default:
		return nil, errors.New("ratelimit: in-process limiters support a single memory backend for now; use Dial against an extauthz server for Redis and failover chains")
	}
	mem, err := memstore.New(o)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: memory backend: %w", err)
	}
	return mem, nil
}

// localSettings maps the server file to the handler's settings.
//
// TODO(issue 15): this repeats cmd/extauthz's settings(); replace it by the
// exported mapping once pkg/config (or pkg/server) owns it. Headers are
// always on: Decide reads Retry-After from them.
func localSettings(cfg *config.Config) server.Settings {
	return server.Settings{
		Bounds:               cfg.Limits.Bounds(),
		CountMode:            cfg.CountMode,
		NearLimitRatio:       cfg.NearLimitRatio,
		Headers:              server.HeaderSettings{Enabled: true},
		Failure:              cfg.Failover.FailurePolicy(),
		FailClosedRetryAfter: cfg.Failover.Breaker.OpenFor,
	}
}
