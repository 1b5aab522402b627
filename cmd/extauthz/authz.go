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

// registerAuthz serves envoy.service.auth.v3.Authorization on g, next to
// the RateLimitService of srv, when cfg has an authz: section, and marks it
// SERVING in h. It returns the handler (nil when not served). Its settings
// are part of srv's snapshot (wire.NewSnapshot), so a reload swaps them with the
// rules.
func registerAuthz(g *grpc.Server, h *health.Server, srv *server.Server, cfg *config.Config) (*server.Authz, error) {
	if cfg.Authz == nil {
		return nil, nil
	}
	a, err := server.NewAuthz(srv)
	if err != nil {
		return nil, err
	}
	a.Register(g)
	h.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	return a, nil
}

// checkAuthzReload refuses a reloaded cfg that adds or removes the authz:
// section (a is the running handler, nil when Check is not served): the
// gRPC services are fixed once serving, so that needs a restart.
func checkAuthzReload(a *server.Authz, cfg *config.Config) error {
	if (a != nil) != (cfg.Authz != nil) {
		return errors.New("authz: adding or removing the authz section needs a restart")
	}
	return nil
}
