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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/extauthz/extauthz/pkg/adminauth"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/dashboard"
	"github.com/extauthz/extauthz/pkg/insight"
	"github.com/extauthz/extauthz/pkg/logging"
	"github.com/extauthz/extauthz/pkg/opsmetrics"
	"github.com/extauthz/extauthz/pkg/reload"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/tracing"
	"github.com/extauthz/extauthz/pkg/wire"
)

// serveOptions are the flags of serve.
type serveOptions struct {
	config          string
	grpcAddr        string
	httpAddr        string
	shutdownTimeout time.Duration
	logLevel        string // "": the config's log.level
	logFormat       string // "": the config's log.format
	// env is the server file generated from envoyproxy/ratelimit's
	// variables, used when no config file is given (nil: config).
	env *envSource
}

// load reads the server file and applies the command line's overrides, at
// start and at every reload, so that a reload sees the same effective
// settings.
func (o *serveOptions) load() (*config.Config, error) {
	var cfg *config.Config
	var err error
	if o.env != nil {
		cfg, err = o.env.load()
	} else {
		cfg, err = config.LoadFile(o.config)
	}
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
	o, err := parseServeFlags(args, getenv, stderr)
	if err != nil {
		return err
	}
	cfg, err := o.load()
	if err != nil {
		return configError(stderr, err)
	}
	log, level, err := logging.New(stderr, cfg.Log)
	if err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	if o.env != nil {
		log.Warn("serving from envoyproxy/ratelimit environment variables (no --config); extauthz config from-env prints the equivalent server file", "variables", o.env.vars)
		for _, n := range o.env.res.Notes {
			log.Warn("variable set but not needed: " + n)
		}
	}
	d := &daemon{opts: o, cfg: cfg, log: log, level: level, getenv: getenv}
	defer d.close()
	if err := d.build(); err != nil {
		return err
	}
	if err := d.listen(ctx); err != nil {
		return err
	}
	return d.run(ctx)
}

// parseServeFlags reads serve's flags and their environment variables.
func parseServeFlags(args []string, getenv func(string) string, stderr io.Writer) (*serveOptions, error) {
	o := new(serveOptions)
	fs := newFlagSet("serve", "serve [--config FILE] [--grpc-addr HOST:PORT] [--http-addr HOST:PORT]", stderr)
	fs.StringVar(&o.config, "config", "", "server config file (env "+envConfig+")")
	fs.StringVar(&o.grpcAddr, "grpc-addr", "", "gRPC listen address, overrides grpc_addr (env "+envGRPCAddr+"; default "+config.DefaultGRPCAddr+")")
	fs.StringVar(&o.httpAddr, "http-addr", "", "HTTP admin listen address, overrides http_addr (env "+envHTTPAddr+"; default "+config.DefaultHTTPAddr+")")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 15*time.Second, "how long in-flight calls may take to finish on shutdown")
	fs.StringVar(&o.logLevel, "log-level", "", "log level, overrides log.level: "+orList(logging.Levels))
	fs.StringVar(&o.logFormat, "log-format", "", "log format, overrides log.format: "+orList(logging.Formats))
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if err := fromEnv(fs, getenv, map[string]string{"config": envConfig, "grpc-addr": envGRPCAddr, "http-addr": envHTTPAddr}); err != nil {
		return nil, err
	}
	env, err := detectEnv(o.config, getenv, stderr)
	if err != nil {
		return nil, err
	}
	o.env = env
	if env == nil {
		if err := requireConfig(fs, o.config); err != nil {
			return nil, err
		}
	}
	if _, err := logging.ParseLevel(o.logLevel); o.logLevel != "" && err != nil {
		return nil, &exitError{code: 2, msg: "--log-level: " + err.Error()}
	}
	if f := o.logFormat; f != "" && !slices.Contains(logging.Formats, f) {
		return nil, &exitError{code: 2, msg: fmt.Sprintf("--log-format %q: want %s", f, orList(logging.Formats))}
	}
	return o, nil
}

// orList formats names as "a, b or c".
func orList(names []string) string {
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// daemon is what serve runs: built (build), bound (listen), then served
// until shutdown (run). close releases what build acquired.
type daemon struct {
	opts   *serveOptions
	cfg    *config.Config
	log    *slog.Logger
	level  *slog.LevelVar
	getenv func(string) string

	reg   *prometheus.Registry
	ops   *opsmetrics.Metrics
	bs    *wire.Backends
	srv   *server.Server
	authz *server.Authz
	g     *grpc.Server
	hs    *health.Server
	// health updates hs from the backends' and xDS's readiness.
	health *grpcHealth
	admin  *http.Server
	// metrics serves only the metrics at metrics.addr (nil: none).
	metrics *http.Server
	// access guards the admin listener (admin section).
	access *adminauth.Access
	// insight records decisions for the traffic insight API (nil: off).
	insight *insight.Recorder
	// xds subscribes to the rules of rules_xds (nil: off).
	xds *xdsState
	// tracer exports the spans of the gRPC calls and of /json (nil:
	// tracing off).
	tracer *tracing.Provider

	glis, hlis, mlis net.Listener
	watcher          *reload.Watcher
	draining         atomic.Bool
}

// close releases the backends and stops the span exporter (after drain
// flushed it, a no-op).
func (d *daemon) close() {
	if d.bs != nil {
		d.bs.Close()
	}
	d.flushSpans()
}

// tracingFlushTimeout bounds the export of the spans still queued at
// shutdown.
const tracingFlushTimeout = 5 * time.Second

// flushSpans exports the spans still queued and stops the exporter.
func (d *daemon) flushSpans() {
	if d.tracer == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	defer cancel()
	if err := d.tracer.Shutdown(ctx); err != nil {
		d.log.Warn("spans lost at shutdown: the collector did not take them in time; check tracing.endpoint", "err", err)
	}
	d.tracer = nil
}

// build creates the metrics, backends, handlers and servers of d.cfg.
func (d *daemon) build() error {
	cfg, log := d.cfg, d.log
	d.reg = prometheus.NewRegistry()
	for _, c := range []prometheus.Collector{collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		if err := d.reg.Register(c); err != nil {
			return fmt.Errorf("register collector: %w", err)
		}
	}
	d.ops = opsmetrics.New(d.reg, nil)
	hash, err := reload.Hash(cfg)
	if err != nil {
		return err
	}
	d.ops.ConfigLoaded(hash)

	routeRedisLogs(log)
	bm, err := server.NewBackendMetrics(d.reg)
	if err != nil {
		return err
	}
	if d.bs, err = wire.NewBackends(cfg, log, bm); err != nil {
		return err
	}
	for name, m := range d.bs.Memory {
		if err := d.ops.AddMemoryBackend(name, m); err != nil {
			return err
		}
	}
	snap, err := wire.NewSnapshot(cfg)
	if err != nil {
		return err
	}
	warnIdleLeases(log, cfg)
	if d.insight, err = newInsight(cfg, d.bs, log); err != nil {
		return err
	}
	if d.tracer, err = tracing.Start(context.Background(), cfg.Tracing, tracing.Options{Version: versionString(), Getenv: d.getenv, Logger: log}); err != nil {
		return err
	}
	metrics, err := server.NewMetrics(d.reg)
	if err != nil {
		return err
	}
	if d.srv, err = server.New(server.Options{Store: d.bs.Store, Chains: d.bs.Named, Metrics: metrics, Logger: log,
		Insight: d.insight, Traced: d.tracer != nil}, snap); err != nil {
		return err
	}
	gopts, err := grpcOptions(cfg, d.ops, log)
	if err != nil {
		return err
	}
	gopts.Interceptor = d.tracer.Interceptor()
	d.g, d.hs = server.NewGRPCServer(gopts)
	d.srv.Register(d.g)
	d.hs.SetServingStatus(rlsv3.RateLimitService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	if d.authz, err = registerAuthz(d.g, d.hs, d.srv, cfg); err != nil {
		return err
	}
	if d.access, err = adminAccess(cfg, log); err != nil {
		return err
	}
	if d.xds, err = d.newXDS(); err != nil {
		return err
	}
	d.health = &grpcHealth{h: d.hs, log: log, serving: true, ready: func() error {
		if err := d.xds.ready(); err != nil {
			return err
		}
		return d.bs.Ready()
	}}
	if d.xds != nil {
		d.health.update() // NOT_SERVING until the first update is applied
	}
	d.admin = d.newAdmin()
	if m := cfg.Metrics; m.Addr != "" {
		d.metrics = &http.Server{
			Handler:           server.NewMetricsHandler(d.reg, m.Path),
			ReadHeaderTimeout: 5 * time.Second,
			ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
		}
	}
	return nil
}

// warnIdleLeases logs each rule of cfg whose lease can do nothing (no
// Redis backend in its chain), as validate notes it.
func warnIdleLeases(log *slog.Logger, cfg *config.Config) {
	for _, n := range cfg.IdleLeases() {
		log.Warn(n)
	}
}

// newAdmin returns the HTTP admin server: metrics, readiness (503 while
// draining or not ready), /config, the dashboard and the RateLimitService
// over HTTP (/json, its body bounded like a gRPC message), behind d.access.
func (d *daemon) newAdmin() *http.Server {
	return &http.Server{
		Handler: server.NewAdmin(server.AdminOptions{
			Gatherer: d.reg,
			Ready: func(ctx context.Context) error {
				if d.draining.Load() {
					return errors.New("shutting down")
				}
				if err := d.srv.Ready(ctx); err != nil {
					return err
				}
				if err := d.xds.ready(); err != nil {
					return err
				}
				return d.bs.Ready()
			},
			Config:    func() []byte { return d.srv.Snapshot().Config() },
			Access:    d.access,
			Dashboard: dashboard.Handler(),
			API:       insightAPI(d.insight),
			JSON:      d.tracer.HTTP("/json", d.srv.JSONHandler(d.cfg.Limits.MaxMessageBytes)),
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
}

// listen binds both listeners and sets up the config watcher; on an error
// nothing stays bound.
func (d *daemon) listen(ctx context.Context) error {
	var lc net.ListenConfig
	glis, err := lc.Listen(ctx, "tcp", d.cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	hlis, err := lc.Listen(ctx, "tcp", d.cfg.HTTPAddr)
	if err != nil {
		_ = glis.Close()
		return fmt.Errorf("http listener: %w", err)
	}
	hlis = adminListener(hlis, d.cfg, d.access, d.log)
	var mlis net.Listener
	if d.metrics != nil {
		if mlis, err = lc.Listen(ctx, "tcp", d.cfg.Metrics.Addr); err != nil {
			_ = glis.Close()
			_ = hlis.Close()
			return fmt.Errorf("metrics listener: %w", err)
		}
	}
	watcher, err := d.newWatcher()
	if err != nil {
		_ = glis.Close()
		_ = hlis.Close()
		if mlis != nil {
			_ = mlis.Close()
		}
		return fmt.Errorf("watch config: %w", err)
	}
	d.glis, d.hlis, d.mlis, d.watcher = glis, hlis, mlis, watcher
	return nil
}

// newWatcher returns the watcher that reloads the config file and
// rules_dir on change and on SIGHUP.
func (d *daemon) newWatcher() (*reload.Watcher, error) {
	started, log, ops := d.cfg, d.log, d.ops
	return reload.New(reload.Options{
		Path:    d.opts.config,
		Load:    d.opts.load,
		Current: d.cfg,
		// Apply, not OnReload: a config refused here is not taken as in
		// service, so the next SIGHUP or file event tries it again instead
		// of finding it unchanged.
		Apply: func(cfg *config.Config, hash string) error {
			if err := d.applyFile(cfg); err != nil {
				return &refusedError{err: err}
			}
			restart := reload.RestartRequired(started, cfg)
			ops.ConfigReloaded(hash, restart)
			log.Info("config reloaded", "hash", hash, "domains", len(d.srv.Snapshot().Rules().Domains()))
			warnIdleLeases(log, cfg)
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
}

// run serves until ctx is done, a signal arrives or a server fails, then
// drains.
func (d *daemon) run(ctx context.Context) error {
	log := d.log
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 3)
	var bg sync.WaitGroup
	bg.Go(func() { watchBackends(ctx, d.bs, d.health, log) })
	bg.Go(func() { d.bs.LoadScripts(ctx, log, scriptLoadTimeout) })
	bg.Go(func() {
		if err := d.watcher.Run(ctx); err != nil && ctx.Err() == nil {
			log.Error("config watcher stopped; reloads are off", "err", err)
		}
	})
	bg.Go(func() {
		if err := d.xds.run(ctx); err != nil {
			log.Error("xDS subscription stopped; the rules stay as they are until a restart", "err", err)
		}
	})
	d.insight.Start()
	go func() { errc <- d.g.Serve(d.glis) }()
	go func() { errc <- d.admin.Serve(d.hlis) }()
	if d.metrics != nil {
		go func() { errc <- d.metrics.Serve(d.mlis) }()
	}
	log.Info("serving", "version", versionString(), "config", d.cfg.File, "tls", d.cfg.TLS.Enabled(), "tracing", d.tracer != nil,
		"grpc_addr", d.glis.Addr().String(), "http_addr", d.hlis.Addr().String(), "domains", len(d.cfg.Rules.Domains()))

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx))
	case err := <-errc:
		serveErr = fmt.Errorf("serve: %w", err)
		log.Error("server failed, shutting down", "err", err)
	}
	stop() // a second signal now terminates at once
	d.drain()
	bg.Wait()
	_ = d.watcher.Close()
	log.Info("stopped")
	return serveErr
}

// drain stops taking calls: health NOT_SERVING and /readyz 503, in-flight
// calls finish (closed after --shutdown-timeout), then the admin server
// stops.
func (d *daemon) drain() {
	d.draining.Store(true)
	d.hs.Shutdown() // every service NOT_SERVING, Watch streams told
	stopped := make(chan struct{})
	go func() {
		d.g.GracefulStop() // no new calls; waits for in-flight ones
		close(stopped)
	}()
	timer := time.NewTimer(d.opts.shutdownTimeout)
	select {
	case <-stopped:
		timer.Stop()
	case <-timer.C:
		d.log.Warn("in-flight calls did not finish in time, closing them", "timeout", d.opts.shutdownTimeout)
		d.g.Stop()
		<-stopped
	}
	hctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := d.admin.Shutdown(hctx); err != nil {
		_ = d.admin.Close()
	}
	if d.metrics != nil {
		if err := d.metrics.Shutdown(hctx); err != nil {
			_ = d.metrics.Close()
		}
	}
	closeInsight(d.insight, d.log)
	d.flushSpans()
}

// scriptLoadTimeout bounds the startup load of the Redis script on each
// Redis backend (see wire.Backends.LoadScripts).
const scriptLoadTimeout = 2 * time.Second

// refusedError is applyReload's error on a reload: the config loaded and
// validated, but the running server cannot take it (for example an authz:
// section added or removed, which needs a restart).
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }
func (e *refusedError) Unwrap() error { return e.err }

// applyReload swaps a reloaded configuration in: one snapshot of the rules
// and settings of the RateLimitService and of Check (when served), swapped
// atomically, and the log level. Listen addresses, backends, TLS and gRPC
// tuning keep their running values (reload.RestartRequired lists them). On
// an error nothing is swapped.
func applyReload(srv *server.Server, authz *server.Authz, level *slog.LevelVar, cfg *config.Config) error {
	if err := checkAuthzReload(authz, cfg); err != nil {
		return err
	}
	snap, err := wire.NewSnapshot(cfg)
	if err != nil {
		return err
	}
	lv, err := logging.ParseLevel(cfg.Log.Level)
	if err != nil {
		return err
	}
	if err := srv.CheckRoutes(snap); err != nil {
		return &refusedError{err}
	}
	srv.Swap(snap)
	level.Set(lv)
	return nil
}

// watchBackends logs breaker state changes and updates the gRPC health
// service with each, until ctx is done.
func watchBackends(ctx context.Context, bs *wire.Backends, g *grpcHealth, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-bs.Events():
			log.Warn("backend state changed", "backend", ev.Backend, "from", ev.From.String(), "to", ev.To.String())
			g.update()
		}
	}
}

// grpcHealth keeps the gRPC health service in line with readiness (the
// backends', and with rules_xds the first update's): every registered
// service SERVING or NOT_SERVING together. After the health server's
// Shutdown its statuses no longer change.
type grpcHealth struct {
	h     *health.Server
	ready func() error
	log   *slog.Logger

	mu      sync.Mutex
	serving bool // what h reports now
}

// update sets every service's status from ready, logging a change.
func (g *grpcHealth) update() {
	g.mu.Lock()
	defer g.mu.Unlock()
	err := g.ready()
	serving := err == nil
	if serving == g.serving {
		return
	}
	g.serving = serving
	st := healthpb.HealthCheckResponse_SERVING
	if !serving {
		st = healthpb.HealthCheckResponse_NOT_SERVING
		g.log.Warn("not ready", "err", err)
	} else {
		g.log.Info("ready again")
	}
	for _, svc := range servingServices(g.h) {
		g.h.SetServingStatus(svc, st)
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
