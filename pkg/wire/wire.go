// Package wire builds what a loaded server file describes: the decision
// server's settings and snapshot (Settings, NewSnapshot) and its backends:
// the default chain and the named chains rules route to, each a lone
// memory store or a failover chain (NewBackends). cmd/extauthz and
// the in-process ratelimit library both build through it.
package wire

import (
	"errors"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
)

// ErrAuthzNotCompiled means a config has an authz: section that Load did
// not compile: a build whose config.Load lacks the authz hooks.
var ErrAuthzNotCompiled = errors.New("authz: the section was loaded but not compiled (config.Load must call compileAuthz)")

// AuthzSettings maps the authz: section to the Check handler's settings;
// nil when the config has none (Check is then not served).
func AuthzSettings(cfg *config.Config) (*server.AuthzSettings, error) {
	a := cfg.Authz
	if a == nil {
		return nil, nil
	}
	x := a.Extractor()
	if x == nil {
		return nil, ErrAuthzNotCompiled
	}
	return &server.AuthzSettings{
		Extractor:      x,
		TenantHeader:   a.UpstreamHeaders.Tenant,
		TierHeader:     a.UpstreamHeaders.Tier,
		APIKeyIDHeader: a.UpstreamHeaders.APIKeyID,
	}, nil
}

// Settings maps the server file to the decision server's settings, the
// Check API's (AuthzSettings) included: one snapshot holds the rules and
// every setting a request reads, so a reload swaps them together.
func Settings(cfg *config.Config) (server.Settings, error) {
	authz, err := AuthzSettings(cfg)
	if err != nil {
		return server.Settings{}, err
	}
	return server.Settings{
		Bounds:               cfg.Limits.Bounds,
		CountMode:            cfg.CountMode,
		NearLimitRatio:       cfg.NearLimitRatio,
		Headers:              cfg.ResponseHeaders,
		OverLimitBody:        cfg.OverLimitBody,
		UpstreamHeaders:      cfg.UpstreamHeaders,
		Decisions:            cfg.Decisions,
		Failure:              cfg.Failover.FailurePolicy(),
		FailClosedRetryAfter: cfg.Failover.Breaker.OpenFor,
		Authz:                authz,
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
