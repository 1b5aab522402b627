package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/logging"
	"github.com/extauthz/extauthz/pkg/opsmetrics"
	"github.com/extauthz/extauthz/pkg/reload"
	"github.com/extauthz/extauthz/pkg/server"
)

// serveOptions are the flags of serve.
type serveOptions struct {
	config          string
	grpcAddr        string
	httpAddr        string
	shutdownTimeout time.Duration
	logLevel        string // "": the config's log.level
	logFormat       string // "": the config's log.format
}

// load reads the server file and applies the command line's overrides, at
// start and at every reload, so that a reload sees the same effective
// settings.
func (o *serveOptions) load() (*config.Config, error) {
	cfg, err := config.LoadFile(o.config)
	if err != nil {
		return nil, err
	}
	if o.grpcAddr != "" {
		cfg.GRPCAddr = o.grpcAddr
	}
	if o.httpAddr != "" {
		cfg.HTTPAddr = o.httpAddr
	}
	if o.logLevel != "" {
		cfg.Log.Level = o.logLevel
	}
	if o.logFormat != "" {
		cfg.Log.Format = o.logFormat
	}
	return cfg, nil
}

// serve runs the servers until ctx is done or SIGTERM/SIGINT arrives, then
// shuts down gracefully: health NOT_SERVING and /readyz 503, no new calls,
// in-flight calls finish (forced after --shutdown-timeout), exit 0. The
// config file and rules_dir are watched, and SIGHUP reloads them.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) error {
	var o serveOptions
	fs := newFlagSet("serve", "serve --config FILE [--grpc-addr HOST:PORT] [--http-addr HOST:PORT]", stderr)
	fs.StringVar(&o.config, "config", "", "server config file (env "+envConfig+")")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "", "gRPC listen address, overrides grpc_addr (env "+envGRPCAddr+"; default "+config.DefaultGRPCAddr+")")
	fs.StringVar(&o.httpAddr, "http-addr", "", "HTTP admin listen address, overrides http_addr (env "+envHTTPAddr+"; default "+config.DefaultHTTPAddr+")")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight calls may take to finish on shutdown")
	fs.StringVar(&o.logLevel, "log-level", "", "log level, overrides log.level: debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "", "log format, overrides log.format: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := fromEnv(fs, getenv, map[string]string{"config": envConfig, "grpc-addr": envGRPCAddr, "http-addr": envHTTPAddr}); err != nil {
		return err
	}
	if err := requireConfig(fs, o.config); err != nil {
		return err
	}
	if _, err := logging.ParseLevel(o.logLevel); o.logLevel != "" && err != nil {
		return &exitError{code: 2, msg: "--log-level: " + err.Error()}
	}
	if f := o.logFormat; f != "" && f != "text" && f != "json" {
		return &exitError{code: 2, msg: fmt.Sprintf("--log-format %q: want text or json", f)}
	}

	cfg, err := o.load()
	if err != nil {
		return configError(stderr, err)
	}
	log, level, err := logging.New(stderr, cfg.Log)
	if err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}

	reg := prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register collector: %w", err)
		}
	}
	ops := opsmetrics.New(reg, nil)
	hash, err := reload.Hash(cfg)
	if err != nil {
		return err
	}
	ops.ConfigLoaded(hash)

	routeRedisLogs(log)
	bs, err := newBackends(cfg, log, server.NewBackendMetrics(reg))
	if err != nil {
		return err
	}
	defer bs.close()
	for name, m := range bs.memory {
		if err := ops.AddMemoryBackend(name, m); err != nil {
			return err
		}
	}
	snap, err := newSnapshot(cfg)
	if err != nil {
		return err
	}
	srv, err := server.New(server.Options{Store: bs.store, Metrics: server.NewMetrics(reg), Logger: log}, snap)
	if err != nil {
		return err
	}

	gopts, err := grpcOptions(cfg, ops, log)
	if err != nil {
		return err
	}
	g, hs := server.NewGRPCServer(gopts)
	srv.Register(g)
	hs.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	authz, err := registerAuthz(g, hs, srv, cfg)
	if err != nil {
		return err
	}

	var draining atomic.Bool
	admin := &http.Server{
		Handler: server.NewAdmin(server.AdminOptions{
			Gatherer: reg,
			Ready: func(ctx context.Context) error {
				if draining.Load() {
					return errors.New("shutting down")
				}
				if err := srv.Ready(ctx); err != nil {
					return err
				}
				return bs.ready()
			},
			Config: func() []byte { return srv.Snapshot().Config() },
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	var lc net.ListenConfig
	glis, err := lc.Listen(ctx, "tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	hlis, err := lc.Listen(ctx, "tcp", cfg.HTTPAddr)
	if err != nil {
		_ = glis.Close()
		return fmt.Errorf("http listener: %w", err)
	}

	started := cfg
	watcher, err := reload.New(reload.Options{
		Path:    o.config,
		Load:    o.load,
		Current: cfg,
		// Apply, not OnReload: a config refused here is not taken as in
		// service, so the next SIGHUP or file event tries it again instead
		// of finding it unchanged.
		Apply: func(cfg *config.Config, hash string) error {
			if err := applyReload(srv, authz, level, cfg); err != nil {
				return &refusedError{err: err}
			}
			restart := reload.RestartRequired(started, cfg)
			ops.ConfigReloaded(hash, restart)
			log.Info("config reloaded", "hash", hash, "domains", len(cfg.Rules.Domains()))
			if len(restart) > 0 {
				log.Warn("changed settings apply only after a restart", "settings", restart)
			}
			return nil
		},
		OnError: func(err error) {
			ops.ConfigReloadFailed()
			if errors.As(err, new(*refusedError)) {
				log.Error("config reload refused; the previous config keeps serving. Fix the config, or restart if the error says "+
					"the change needs one; then send SIGHUP or save the file again to retry", "err", err)
				return
			}
			log.Error("config reload failed; the previous config keeps serving", "err", err)
		},
		OnUnchanged: func(string) { ops.ConfigUnchanged() },
		Signals:     []os.Signal{syscall.SIGHUP},
	})
	if err != nil {
		_ = glis.Close()
		_ = hlis.Close()
		return fmt.Errorf("watch config: %w", err)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 2)
	var bg sync.WaitGroup
	bg.Go(func() { watchBackends(ctx, bs, hs, log) })
	bg.Go(func() { bs.loadScripts(ctx, log, scriptLoadTimeout) })
	bg.Go(func() {
		if err := watcher.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("config watcher stopped; reloads are off", "err", err)
		}
	})
	go func() { errc <- g.Serve(glis) }()
	go func() { errc <- admin.Serve(hlis) }()
	log.Info("serving", "version", versionString(), "config", cfg.File, "tls", cfg.TLS.Enabled(),
		"grpc_addr", glis.Addr().String(), "http_addr", hlis.Addr().String(), "domains", len(cfg.Rules.Domains()))

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
		log.Error("server failed, shutting down", "err", err)
	}
	stop() // a second signal now terminates at once

	draining.Store(true)
	hs.Shutdown() // every service NOT_SERVING, Watch streams told
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop() // no new calls; waits for in-flight ones
		close(stopped)
	}()
	timer := time.NewTimer(o.shutdownTimeout)
	select {
	case <-stopped:
		timer.Stop()
	case <-timer.C:
		log.Warn("in-flight calls did not finish in time, closing them", "timeout", o.shutdownTimeout)
		g.Stop()
		<-stopped
	}
	hctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := admin.Shutdown(hctx); err != nil {
		_ = admin.Close()
	}
	bg.Wait()
	_ = watcher.Close()
	log.Info("stopped")
	return serveErr
}

// scriptLoadTimeout bounds the startup load of the Redis script on each
// Redis backend (see backends.loadScripts).
const scriptLoadTimeout = 2 * time.Second

// refusedError is applyReload's error on a reload: the config loaded and
// validated, but the running server cannot take it (for example an authz:
// section added or removed, which needs a restart).
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// applyReload swaps a reloaded configuration in: the rules and settings of
// the RateLimitService (and of Check when served), and the log level.
// Listen addresses, backends, TLS and gRPC tuning keep their running values
// (reload.RestartRequired lists them). On an error nothing is swapped.
func applyReload(srv *server.Server, authz *server.Authz, level *slog.LevelVar, cfg *config.Config) error {
	snap, err := newSnapshot(cfg)
	if err != nil {
		return err
	}
	lv, err := logging.ParseLevel(cfg.Log.Level)
	if err != nil {
		return err
	}
	if err := reloadAuthz(authz, cfg); err != nil {
		return err
	}
	srv.Swap(snap)
	level.Set(lv)
	return nil
}

// watchBackends logs breaker state changes and keeps the gRPC health
// service in line with the backends' readiness (every registered service
// SERVING or NOT_SERVING together), until ctx is done. After the health
// server's Shutdown its statuses no longer change.
func watchBackends(ctx context.Context, bs *backends, h *health.Server, log *slog.Logger) {
	servingNow := true
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-bs.events:
			log.Warn("backend state changed", "backend", ev.backend, "from", ev.from.String(), "to", ev.to.String())
			err := bs.ready()
			if serving := err == nil; serving != servingNow {
				servingNow = serving
				st := healthpb.HealthCheckResponse_SERVING
				if !serving {
					st = healthpb.HealthCheckResponse_NOT_SERVING
					log.Warn("not ready", "err", err)
				} else {
					log.Info("ready again")
				}
				for _, svc := range servingServices(h) {
					h.SetServingStatus(svc, st)
				}
			}
		}
	}
}

// servingServices lists the services whose status the health server
// reports: the overall "" and each registered API.
func servingServices(h *health.Server) []string {
	svcs := []string{"", rlsv3.RateLimitService_ServiceDesc.ServiceName}
	resp, err := h.List(context.Background(), &healthpb.HealthListRequest{})
	if err == nil {
		for name := range resp.GetStatuses() {
			if !slices.Contains(svcs, name) {
				svcs = append(svcs, name)
			}
		}
	}
	return svcs
}
