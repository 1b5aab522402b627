package main

import (
	"errors"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
)

// errAuthzNotCompiled means a config has an authz: section that Load did
// not compile: a build whose config.Load lacks the authz hooks.
var errAuthzNotCompiled = errors.New("authz: the section was loaded but not compiled (config.Load must call compileAuthz)")

// authzSettings maps the authz: section to the Check handler's settings;
// ok is false when the config has none (Check is then not served).
func authzSettings(cfg *config.Config) (st server.AuthzSettings, ok bool, err error) {
	a := cfg.Authz
	if a == nil {
		return server.AuthzSettings{}, false, nil
	}
	x := a.Extractor()
	if x == nil {
		return server.AuthzSettings{}, false, errAuthzNotCompiled
	}
	return server.AuthzSettings{
		Extractor:      x,
		TenantHeader:   a.UpstreamHeaders.Tenant,
		TierHeader:     a.UpstreamHeaders.Tier,
		APIKeyIDHeader: a.UpstreamHeaders.APIKeyID,
	}, true, nil
}

// registerAuthz serves envoy.service.auth.v3.Authorization on g, next to
// the RateLimitService of srv, when cfg has an authz: section, and marks it
// SERVING in h. It returns the handler (nil when not served) so that a
// reload can Swap its settings.
func registerAuthz(g *grpc.Server, h *health.Server, srv *server.Server, cfg *config.Config) (*server.Authz, error) {
	st, ok, err := authzSettings(cfg)
	if err != nil || !ok {
		return nil, err
	}
	a, err := server.NewAuthz(srv, st)
	if err != nil {
		return nil, err
	}
	a.Register(g)
	h.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return a, nil
}

// reloadAuthz swaps the Check settings of a reloaded cfg into a (nil when
// Check is not served). Adding or removing the authz: section needs a
// restart: the gRPC services are fixed once serving.
func reloadAuthz(a *server.Authz, cfg *config.Config) error {
	st, ok, err := authzSettings(cfg)
	switch {
	case err != nil:
		return err
	case (a != nil) != ok:
		return errors.New("authz: adding or removing the authz section needs a restart")
	case a == nil:
		return nil
	}
	return a.Swap(st)
}
