package main

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/xdsrules"
)

// xdsState is serve's subscription to rules_xds. The rules served are the
// server file's settings (as last reloaded) with the domains of the last
// xDS update applied; a file reload and an update each build that
// combination anew and swap it in as one snapshot, one at a time.
type xdsState struct {
	client *xdsrules.Client
	mu     sync.Mutex
	// file is the server file's config last applied; configs the last
	// update applied (nil before the first).
	file    *config.Config
	configs []*rlsconfv3.RateLimitConfig
	// applied is set once an update's rules serve (before the client
	// counts it as applied, which it does when Apply has returned).
	applied atomic.Bool
}

// newXDS subscribes d to cfg.RulesXDS; nil when it is not set.
func (d *daemon) newXDS() (*xdsState, error) {
	if d.cfg.RulesXDS == nil {
		return nil, nil
	}
	x := &xdsState{file: d.cfg}
	m, err := xdsrules.NewMetrics(d.reg)
	if err != nil {
		return nil, err
	}
	c, err := xdsrules.New(*d.cfg.RulesXDS, xdsrules.Options{
		Apply:   func(_ context.Context, u xdsrules.Update) error { return d.applyXDS(x, u) },
		Logger:  d.log.With("component", "rules_xds"),
		Metrics: m,
	})
	if err != nil {
		return nil, err
	}
	x.client = c
	return x, nil
}

// applyXDS installs the rules of update u over the current server file's
// settings, or returns why not (the update is then NACKed).
func (d *daemon) applyXDS(x *xdsState, u xdsrules.Update) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	cfg, err := x.file.WithXDSRules(u.Configs)
	if err != nil {
		return err
	}
	if err := applyReload(d.srv, d.authz, d.level, cfg); err != nil {
		return err
	}
	x.configs = u.Configs
	if !x.applied.Swap(true) && d.health != nil {
		d.health.update() // SERVING now, if the backends are ready
	}
	return nil
}

// applyFile installs a reloaded server file: with rules_xds, together with
// the domains of the last update applied.
func (d *daemon) applyFile(cfg *config.Config) error {
	x := d.xds
	if x == nil {
		if cfg.RulesXDS != nil {
			return &refusedError{errors.New("rules_xds was added: restart to subscribe to the xDS management server")}
		}
		return applyReload(d.srv, d.authz, d.level, cfg)
	}
	if cfg.RulesXDS == nil {
		return &refusedError{errors.New("rules_xds was removed: restart to serve the rules of the server file")}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	served := cfg
	if x.configs != nil {
		var err error
		if served, err = cfg.WithXDSRules(x.configs); err != nil {
			return &refusedError{err}
		}
	}
	if err := applyReload(d.srv, d.authz, d.level, served); err != nil {
		return err
	}
	x.file = cfg
	return nil
}

// run subscribes until ctx is done.
func (x *xdsState) run(ctx context.Context) error {
	if x == nil {
		return nil
	}
	return x.client.Run(ctx)
}

// ready reports whether the first update has been applied (nil without
// rules_xds).
func (x *xdsState) ready() error {
	if x == nil || x.applied.Load() {
		return nil
	}
	return x.client.Ready()
}
