package wire

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/lease"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/logging"
	"github.com/extauthz/extauthz/pkg/server"
)

// Backends are the stores built from the server file's chains: the
// default chain (the backends list) and the named chains (config.Chains).
// A chain of a lone memory backend is that store; anything else is a
// failover chain. Close releases them.
type Backends struct {
	// Store decides for the default chain: the memory store or the chain.
	Store limiter.Store
	// Named are the named chains' stores, by chain name, for rules that
	// route to them (server.Options.Chains).
	Named map[string]limiter.Store
	// Chain is the default chain's failover chain; nil for a lone memory
	// backend.
	Chain *chain.Chain
	// Members are the backends of every chain, in order (for the health
	// command).
	Members []chain.Backend
	// Policy is the chains' readiness policy (see Ready).
	Policy chain.Readiness
	// Memory holds the memory stores by backend name, for their metrics.
	Memory map[string]*memstore.Store

	chains []*chain.Chain // every failover chain, for Ready
	events chan StateEvent
	// redis holds the Redis stores, in chain order, for LoadScripts.
	redis   []redisMember
	closers []func()
}

// redisMember is one Redis backend of the chain.
type redisMember struct {
	name    string
	store   *redisstore.Store
	metrics *server.RedisMetrics // nil without metrics
}

// StateEvent is one breaker state change of a chain backend.
type StateEvent struct {
	Backend  string
	From, To chain.State
}

// Events receives the chain's breaker state changes, for logs and the gRPC
// health service. Changes are dropped while it is full (64 pending); a
// lone memory backend sends none. Nobody has to read it.
func (bs *Backends) Events() <-chan StateEvent { return bs.events }

// NewBackends builds the chains of cfg, logging to log (nil:
// slog.Default()) and feeding bm (nil: no metrics). Nothing but a
// PostgreSQL backend's schema check (pgstore.Open, bounded by its connect
// timeout; it refuses an unknown schema with pgstore.ErrSchema) contacts a
// remote backend here: the chains' health checks find out whether it is
// up.
func NewBackends(cfg *config.Config, log *slog.Logger, bm *server.BackendMetrics) (*Backends, error) {
	if log == nil {
		log = slog.Default()
	}
	bs := &Backends{events: make(chan StateEvent, 64), Memory: map[string]*memstore.Store{}, Named: map[string]limiter.Store{}, Policy: cfg.Failover.Readiness}
	for _, ch := range cfg.ChainList() {
		st, c, err := bs.build(cfg, ch, log, bm)
		if err != nil {
			bs.Close()
			return nil, err
		}
		if c != nil {
			bs.chains = append(bs.chains, c)
		}
		if ch.Name == config.DefaultChain {
			bs.Store, bs.Chain = st, c
		} else {
			bs.Named[ch.Name] = st
		}
	}
	return bs, nil
}

// build opens the stores of ch and, unless it is a lone memory backend,
// their failover chain.
func (bs *Backends) build(cfg *config.Config, ch config.Chain, log *slog.Logger, bm *server.BackendMetrics) (limiter.Store, *chain.Chain, error) {
	var members []chain.Backend
	for i, b := range ch.Backends {
		m, err := bs.member(b.Name, b, bm)
		if err != nil {
			return nil, nil, fmt.Errorf("%s (%s): %w", config.BackendPath(ch.Name, i), b.Type, err)
		}
		members = append(members, m)
	}
	bs.Members = append(bs.Members, members...)
	if len(members) == 1 && members[0].Local {
		log.Debug("backend", "chain", ch.Name, "type", "memory", "max_keys", ch.Backends[0].Memory.MaxKeys)
		return members[0].Store, nil, nil
	}
	c, err := bs.newChain(cfg, members, log, bm)
	if err != nil {
		return nil, nil, fmt.Errorf("chain %s: %w", ch.Name, err)
	}
	return c, c, nil
}

// member opens the store of backend b.
func (bs *Backends) member(name string, b config.Backend, bm *server.BackendMetrics) (chain.Backend, error) {
	switch b.Type {
	case "memory":
		mem, err := memstore.New(b.Memory)
		if err != nil {
			return chain.Backend{}, err
		}
		bs.closers = append(bs.closers, func() { _ = mem.Close() })
		bs.Memory[name] = mem
		return chain.Backend{Name: name, Store: mem, Local: true, BackendSettings: b.Failover}, nil
	case "redis":
		var ro redisstore.Options
		var rm *server.RedisMetrics
		if bm != nil {
			rm = bm.Redis(name)
			setRedisHooks(&ro, rm)
		}
		rs, err := redisstore.Open(b.Redis, ro)
		if err != nil {
			return chain.Backend{}, err
		}
		// Rules with rate_limit.lease lease hot keys from Redis, inside the
		// chain so that a fallback never leases; other requests pass
		// straight through.
		ls, err := lease.New(rs, lease.Options{})
		if err != nil {
			_ = rs.Close()
			return chain.Backend{}, err
		}
		// The lease layer returns its blocks to Redis before Redis closes.
		bs.closers = append(bs.closers, func() { _ = ls.Close(); _ = rs.Close() })
		bs.redis = append(bs.redis, redisMember{name: name, store: rs, metrics: rm})
		if bm != nil {
			if err := bm.Lease(name, func() server.LeaseUsage { return leaseUsage(ls) }); err != nil {
				return chain.Backend{}, err
			}
		}
		return chain.Backend{Name: name, Addr: rs.Addr(), Store: ls, BackendSettings: b.Failover}, nil
	case "postgres":
		ps, err := openPostgres(name, b.Postgres, bm)
		if err != nil {
			return chain.Backend{}, err
		}
		bs.closers = append(bs.closers, func() { _ = ps.Close() })
		return chain.Backend{Name: name, Addr: ps.Addr(), Store: ps, BackendSettings: b.Failover}, nil
	}
	return chain.Backend{}, fmt.Errorf("type %q is not supported by this build", b.Type)
}

// leaseUsage reads the counts of a lease layer for its metrics.
func leaseUsage(ls *lease.Store) server.LeaseUsage {
	st := ls.Stats()
	return server.LeaseUsage{Local: st.Local, Blocks: st.Blocks, Refused: st.Refused, Evicted: st.Evicted, Returned: st.Returned, Keys: int64(ls.Len())}
}

// setRedisHooks points the metrics hooks of o at m: every round trip's
// duration and error kind, script loads and local cache hits.
func setRedisHooks(o *redisstore.Options, m *server.RedisMetrics) {
	o.OnCall = func(d time.Duration, err error) { m.Call(d, redisstore.ErrorKind(err)) }
	o.OnScriptLoad = m.ScriptLoad
	o.OnCacheHit = m.CacheHits
}

// newChain builds the failover chain over members.
func (bs *Backends) newChain(cfg *config.Config, members []chain.Backend, log *slog.Logger, bm *server.BackendMetrics) (*chain.Chain, error) {
	c, err := chain.New(chain.Options{
		Backends: members,
		Settings: cfg.Failover,
		Hooks:    chainHooks(bs.events, members, log, bm),
	})
	if err != nil {
		return nil, fmt.Errorf("backends: %w", err)
	}
	// Close the chain (its health checks) before the stores it uses.
	bs.closers = append([]func(){func() { _ = c.Close() }}, bs.closers...)
	for _, m := range members {
		log.Debug("backend", "name", m.Name, "addr", m.Addr, "local", m.Local, "fair_share", m.FairShare)
	}
	return c, nil
}

// chainHooks returns the chain's hooks: state changes go to events (for
// logs and the gRPC health service), failovers to a throttled warning, and
// everything to bm's metrics when bm is not nil.
func chainHooks(events chan<- StateEvent, members []chain.Backend, log *slog.Logger, bm *server.BackendMetrics) chain.Hooks {
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
		case events <- StateEvent{backend, from, to}:
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

// LoadScripts loads the Lua script on every Redis backend once, each
// bounded by timeout, so that the first requests need no reload. It is
// best effort: a backend that is down loads it on its first call.
func (bs *Backends) LoadScripts(ctx context.Context, log *slog.Logger, timeout time.Duration) {
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

// Ready reports whether the backends can serve under the readiness
// policy, which every chain must meet.
func (bs *Backends) Ready() error {
	var down []string
	for _, c := range bs.chains {
		if c.Ready(bs.Policy) {
			continue
		}
		for _, st := range c.Statuses() {
			if !st.Usable() {
				down = append(down, st.Name+" "+st.State.String())
			}
		}
	}
	if len(down) == 0 {
		return nil
	}
	return fmt.Errorf("backends not ready under readiness %s (%s)", bs.Policy, strings.Join(down, ", "))
}

// Close releases the chain and the stores. It may be called more than
// once.
func (bs *Backends) Close() {
	for _, f := range bs.closers {
		f()
	}
	bs.closers = nil
}
