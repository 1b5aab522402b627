package main

import (
	"crypto/tls"
	"log/slog"
	"net"

	"github.com/extauthz/extauthz/pkg/adminauth"
	"github.com/extauthz/extauthz/pkg/config"
)

// adminAccess builds the admin listener's access control from cfg.Admin.
func adminAccess(cfg *config.Config, log *slog.Logger) (*adminauth.Access, error) {
	return adminauth.New(cfg.Admin, func(err error) {
		log.Error("admin TLS files changed but do not load; the previous certificate keeps serving", "err", err)
	})
}

// adminListener wraps lis in the admin TLS, when configured, and says what
// the listener exposes: an open listener reachable from other hosts gets a
// warning, since its dashboard and API name clients, and so does an open
// one beside a gRPC listener that requires client certificates, since its
// /json is a way around them.
func adminListener(lis net.Listener, cfg *config.Config, a *adminauth.Access, log *slog.Logger) net.Listener {
	auth := "none"
	switch tok, ca := cfg.Admin.Auth.TokenFile != "", cfg.Admin.TLS.ClientCAFile != ""; {
	case tok && ca:
		auth = "token or client certificate"
	case tok:
		auth = "token"
	case ca:
		auth = "client certificate"
	}
	tc := a.TLSConfig()
	if auth == "none" && !loopback(lis.Addr()) {
		log.Warn("admin listener open to the network without credentials: the dashboard, /api and /config show "+
			"client addresses and the configuration, and /json counts hits; set admin.auth.token_file or admin.tls.client_ca_file (see README, Admin listener) or bind http_addr to 127.0.0.1",
			"http_addr", lis.Addr().String())
	}
	if auth == "none" && cfg.TLS.ClientCAFile != "" {
		log.Warn("the gRPC listener requires client certificates (tls.client_ca_file) but the admin listener's /json, "+
			"the same API over HTTP, needs no credential; set admin.tls.client_ca_file (or admin.auth.token_file) to require one there too",
			"http_addr", lis.Addr().String())
	}
	log.Info("admin listener", "http_addr", lis.Addr().String(), "tls", tc != nil, "auth", auth,
		"protect_metrics", cfg.Admin.ProtectMetrics, "protect_health", cfg.Admin.ProtectHealth)
	if tc == nil {
		return lis
	}
	return tls.NewListener(lis, tc)
}

func loopback(a net.Addr) bool {
	t, ok := a.(*net.TCPAddr)
	return ok && t.IP.IsLoopback()
}
