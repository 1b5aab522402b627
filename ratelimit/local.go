package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/wire"
)

// LocalOptions configures an in-process Limiter. Zero values are the
// documented defaults.
type LocalOptions struct {
	// Registerer receives the extauthz_* decision and backend metrics, as
	// the server exports them (default: a private registry, i.e. not
	// exported). One Limiter per Registerer: the metrics' names are fixed,
	// and a second New on the same Registerer returns an error.
	Registerer prometheus.Registerer
	// Logger receives store-failure warnings and backend state changes
	// (default slog.Default()).
	Logger *slog.Logger
}

// scriptLoadTimeout bounds the load of the Redis script on each backend
// (as cmd/extauthz's).
const scriptLoadTimeout = 2 * time.Second

// Open returns an in-process Limiter over the extauthz server file at path:
// its domains (inline and rules_dir), count mode, bounds, backends (memory,
// Redis, or a failover chain with breakers and health checks, built as
// cmd/extauthz builds them) and failure mode (failure_mode envoy, the
// default, makes Decide return an error when the backends fail; open and
// closed answer, Decision.Failed set). Listen addresses, TLS, admin and
// ext_authz settings are ignored. Close stops the health checks and
// closes the backends.
func Open(ctx context.Context, path string) (*Limiter, error) {
	cfg, err := config.LoadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	return New(ctx, cfg, LocalOptions{})
}

// New returns an in-process Limiter over a loaded config (see Open). It
// loads the Lua script on each Redis backend first (as the server does at
// startup, so that the first decisions fit in the breaker's call_timeout),
// bounded by ctx and scriptLoadTimeout each; a backend that is down is not
// an error: the chain's health checks and failure mode handle it.
//
// Unstable: New takes pkg/config's Config, whose shape follows the server
// file and may change.
func New(ctx context.Context, cfg *config.Config, o LocalOptions) (*Limiter, error) {
	if cfg == nil || cfg.Rules == nil {
		return nil, errors.New("ratelimit: config without rules")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	snap, err := wire.NewSnapshot(cfg)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	reg := o.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	bm, err := server.NewBackendMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	bs, err := wire.NewBackends(cfg, o.Logger, bm)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	srv, err := server.New(server.Options{Store: bs.Store, Chains: bs.Named, Metrics: metrics, Logger: o.Logger}, snap)
	if err != nil {
		bs.Close()
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	bs.LoadScripts(ctx, log, scriptLoadTimeout)
	return &Limiter{local: srv, closers: []func() error{func() error { bs.Close(); return nil }}}, nil
}
