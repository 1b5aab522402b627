package main

import (
	"fmt"
	"io"
	"log/slog"

	"google.golang.org/grpc/credentials"

	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/opsmetrics"
	"github.com/extauthz/extauthz/pkg/server"
)

// configError prints every problem of a config, one per line
// ("file:line:col: path: message"), and returns exit code 1.
func configError(w io.Writer, err error) error {
	fmt.Fprintln(w, err)
	return &exitError{code: 1}
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
