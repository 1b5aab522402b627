package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/logging"
	"github.com/extauthz/extauthz/pkg/opsmetrics"
	"github.com/extauthz/extauthz/pkg/server"
)

// configError prints every problem of a config, one per line
// ("file:line:col: path: message"), and returns exit code 1.
func configError(w io.Writer, err error) error {
	fmt.Fprintln(w, err)
	return &exitError{code: 1}
}

// settings maps the server file to the handler's settings.
func settings(cfg *config.Config) (server.Settings, error) {
	return server.Settings{
		Bounds:               cfg.Limits.Bounds(),
		CountMode:            cfg.CountMode,
		NearLimitRatio:       cfg.NearLimitRatio,
		Headers:              cfg.ResponseHeaders,
		OverLimitBody:        cfg.OverLimitBody,
		Failure:              cfg.Failover.FailurePolicy(),
		FailClosedRetryAfter: cfg.Failover.Breaker.OpenFor,
	}, nil
}

// newSnapshot builds the handler's snapshot of cfg: rules, settings and
// the redacted effective configuration for /config.
func newSnapshot(cfg *config.Config) (*server.Snapshot, error) {
	st, err := settings(cfg)
	if err != nil {
		return nil, err
	}
	rendered, err := cfg.Redacted()
	if err != nil {
		return nil, err
	}
	return server.NewSnapshot(cfg.Rules, st, rendered)
}

// backends is the store built from the server file's backends: a lone
// memory backend as is, anything else as a failover chain.
type backends struct {
	store  limiter.Store
	chain  *chain.Chain // nil for a lone memory backend
	policy chain.Readiness
	// events receives breaker state changes (dropped when full), for logs
	// and the gRPC health service.
	events chan stateEvent
	// memory holds the memory stores by backend name, for their metrics.
	memory map[string]*memstore.Store
	// redis holds the Redis stores, in chain order, for loadScripts.
	redis   []redisMember
	closers []func()
}

// redisMember is one Redis backend of the chain.
type redisMember struct {
	name    string
	store   *redisstore.Store
	metrics *server.RedisMetrics // nil without metrics
}

// stateEvent is one breaker state change of a chain backend.
type stateEvent struct {
	backend  string
	from, to chain.State
}

// newBackends builds the backends of cfg, feeding bm (nil: no metrics).
// Nothing contacts a remote backend here: the chain's health checks find
// out whether it is up.
func newBackends(cfg *config.Config, log *slog.Logger, bm *server.BackendMetrics) (*backends, error) {
	bs := &backends{events: make(chan stateEvent, 64), memory: map[string]*memstore.Store{}}
	list := cfg.Backends
	if len(list) == 0 {
		list = []config.Backend{{Type: "memory"}}
	}
	var members []chain.Backend
	names := map[string]int{}
	for i, b := range list {
		name := b.Type
		if names[name]++; names[name] > 1 {
			name = fmt.Sprintf("%s#%d", b.Type, names[name])
		}
		switch b.Type {
		case "memory":
			mem, err := memstore.New(b.Memory)
			if err != nil {
				bs.close()
				return nil, fmt.Errorf("backends[%d] (memory): %w", i, err)
			}
			bs.closers = append(bs.closers, func() { _ = mem.Close() })
			bs.memory[name] = mem
			members = append(members, chain.Backend{Name: name, Store: mem, Local: true, BackendSettings: b.Failover})
		case "redis":
			var ro redisstore.Options
			var rm *server.RedisMetrics
			if bm != nil {
				rm = bm.Redis(name)
				setRedisHooks(&ro, rm)
			}
			rs, err := redisstore.Open(b.Redis, ro)
			if err != nil {
				bs.close()
				return nil, fmt.Errorf("backends[%d] (redis): %w", i, err)
			}
			bs.closers = append(bs.closers, func() { _ = rs.Close() })
			bs.redis = append(bs.redis, redisMember{name: name, store: rs, metrics: rm})
			members = append(members, chain.Backend{Name: name, Addr: rs.Addr(), Store: rs, BackendSettings: b.Failover})
		default:
			bs.close()
			return nil, fmt.Errorf("backends[%d]: type %q is not supported by this build", i, b.Type)
		}
	}
	if len(members) == 1 && members[0].Local {
		bs.store = members[0].Store
		log.Debug("backend", "type", "memory", "max_keys", list[0].Memory.MaxKeys)
		return bs, nil
	}

	bs.policy = cfg.Failover.Readiness
	c, err := chain.New(chain.Options{
		Backends: members,
		Settings: cfg.Failover,
		Hooks:    chainHooks(bs, members, log, bm),
	})
	if err != nil {
		bs.close()
		return nil, fmt.Errorf("backends: %w", err)
	}
	// Close the chain (its health checks) before the stores it uses.
	bs.closers = append([]func(){func() { _ = c.Close() }}, bs.closers...)
	bs.store, bs.chain = c, c
	for _, m := range members {
		log.Debug("backend", "name", m.Name, "addr", m.Addr, "local", m.Local, "fair_share", m.FairShare)
	}
	return bs, nil
}

// chainHooks returns the chain's hooks: state changes go to bs.events (for
// logs and the gRPC health service), failovers to a throttled warning, and
// everything to bm's metrics when bm is not nil.
func chainHooks(bs *backends, members []chain.Backend, log *slog.Logger, bm *server.BackendMetrics) chain.Hooks {
	var h chain.Hooks
	if bm != nil {
		h = bm.ChainHooks(members)
	}
	metricsState, metricsFailover := h.StateChange, h.Failover
	h.StateChange = func(backend string, from, to chain.State) {
		if metricsState != nil {
			metricsState(backend, from, to)
		}
		select { // the hook runs under the breaker's lock: never block
		case bs.events <- stateEvent{backend, from, to}:
		default:
		}
	}
	// One throttle key per backend, built once: the hook runs on the
	// request path while the chain is degraded.
	keys := make(map[string]string, len(members))
	for _, m := range members {
		keys[m.Name] = "failover/" + m.Name
	}
	var throttle logging.Throttle
	h.Failover = func(from, to string, why chain.Reason) {
		if metricsFailover != nil {
			metricsFailover(from, to, why)
		}
		if why == chain.ReasonOpen {
			return // the breaker's state change was logged
		}
		throttle.Warn(context.Background(), log, keys[from], "backend call failed, moved on to the next backend",
			"from", from, "to", to, "reason", why.String())
	}
	return h
}

// loadScripts loads the Lua script on every Redis backend once, each
// bounded by timeout, so that the first requests need no reload. It is
// best effort: a backend that is down loads it on its first call.
func (bs *backends) loadScripts(ctx context.Context, log *slog.Logger, timeout time.Duration) {
	for _, r := range bs.redis {
		lctx, cancel := context.WithTimeout(ctx, timeout)
		err := r.store.LoadScript(lctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("redis script not preloaded; the first call loads it", "backend", r.name, "err", err)
			}
			continue
		}
		if r.metrics != nil {
			r.metrics.ScriptLoad()
		}
		log.Debug("redis script loaded", "backend", r.name)
	}
}

// ready reports whether the backends can serve under the readiness policy.
func (bs *backends) ready() error {
	if bs.chain == nil || bs.chain.Ready(bs.policy) {
		return nil
	}
	var down []string
	for _, st := range bs.chain.Statuses() {
		if !st.Usable() {
			down = append(down, st.Name+" "+st.State.String())
		}
	}
	return fmt.Errorf("backends not ready under readiness %s (%s)", bs.policy, strings.Join(down, ", "))
}

// close releases the chain and the stores.
func (bs *backends) close() {
	for _, f := range bs.closers {
		f()
	}
	bs.closers = nil
}

// grpcOptions maps the grpc and limits sections, and tls (a certificate
// reloader whose expiry and reloads go to ops), to the gRPC server's
// options.
func grpcOptions(cfg *config.Config, ops *opsmetrics.Metrics, log *slog.Logger) (server.GRPCOptions, error) {
	o := server.GRPCOptions{
		GRPCSettings:   cfg.GRPC,
		MaxRecvMsgSize: cfg.Limits.MaxMessageBytes,
		Logger:         log,
	}
	t := cfg.TLS
	if !t.Enabled() {
		return o, nil
	}
	if err := ops.EnableTLS(); err != nil {
		return o, err
	}
	r, err := certs.New(certs.Options{
		CertFile:     t.CertFile,
		KeyFile:      t.KeyFile,
		ClientCAFile: t.ClientCAFile,
		MinVersion:   t.Version(),
		OnReload: func(info certs.Info) {
			ops.CertLoaded(info.NotAfter, true)
			log.Info("TLS certificate reloaded", "certificate", info.String())
		},
		OnError: func(err error) {
			ops.CertReloadFailed()
			log.Error("TLS certificate reload failed; the previous certificate keeps serving", "err", err)
		},
	})
	if err != nil {
		return o, fmt.Errorf("tls: %w", err)
	}
	ops.CertLoaded(r.Info().NotAfter, false)
	o.Creds = credentials.NewTLS(r.TLSConfig())
	return o, nil
}
