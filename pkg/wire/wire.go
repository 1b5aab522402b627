// Package wire builds what a loaded server file describes: the decision
// server's settings and snapshot (Settings, NewSnapshot) and its backends:
// the default chain and the named chains rules route to, each a lone
// memory store or a failover chain (NewBackends). cmd/extauthz and
// the in-process ratelimit library both build through it.
package wire

import (
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
)

// Settings maps the server file to the decision server's settings.
func Settings(cfg *config.Config) (server.Settings, error) {
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

// NewSnapshot builds the decision server's snapshot of cfg: rules,
// settings and the redacted effective configuration (served on /config).
func NewSnapshot(cfg *config.Config) (*server.Snapshot, error) {
	st, err := Settings(cfg)
	if err != nil {
		return nil, err
	}
	rendered, err := cfg.Redacted()
	if err != nil {
		return nil, err
	}
	return server.NewSnapshot(cfg.Rules, st, rendered)
}
