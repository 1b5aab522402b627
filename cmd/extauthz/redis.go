package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/logging"
	"github.com/extauthz/extauthz/pkg/server"
)

// redisStoreConfig maps a redis backend entry of the server file to
// redisstore's connection settings and store options. The caller adds the
// metrics hooks (Options.OnCall, OnScriptLoad, OnCacheHit) and then calls
// redisstore.Open, which validates, reads the TLS files and does not
// contact Redis.
func redisStoreConfig(b config.RedisBackend) (redisstore.Config, redisstore.Options) {
	cfg := redisstore.Config{
		URL:          string(b.URL),
		Username:     b.Username,
		Password:     string(b.PasswordValue()),
		PasswordFile: b.PasswordFile,
		TLS: redisstore.TLS{
			Enabled:            b.TLS.Enabled,
			CAFile:             b.TLS.CAFile,
			CertFile:           b.TLS.CertFile,
			KeyFile:            b.TLS.KeyFile,
			ServerName:         b.TLS.ServerName,
			InsecureSkipVerify: b.TLS.InsecureSkipVerify,
		},
		PoolSize:     b.Pool.Size,
		MinIdleConns: b.Pool.MinIdle,
		PoolTimeout:  b.Pool.Timeout,
		DialTimeout:  b.Timeouts.Dial,
		ReadTimeout:  b.Timeouts.Read,
		WriteTimeout: b.Timeouts.Write,
		MaxRetries:   b.MaxRetries,
		AutoPipeline: b.AutoPipelineOn(),
	}
	if s := b.Sentinel; s != nil {
		cfg.MasterName = s.MasterName
		cfg.SentinelAddrs = s.Addrs
		cfg.DB = s.DB
		cfg.SentinelUsername = s.Username
		cfg.SentinelPassword = string(s.Password)
	}
	if c := b.Cluster; c != nil {
		cfg.ClusterAddrs = c.Addrs
	}
	opts := redisstore.Options{Prefix: b.Prefix}
	if b.LocalCache.Enabled {
		opts.LocalCacheSize = b.LocalCache.MaxKeys
	}
	return cfg, opts
}

// setRedisHooks points the metrics hooks of o at m: every round trip's
// duration and error kind, script loads and local cache hits.
func setRedisHooks(o *redisstore.Options, m *server.RedisMetrics) {
	o.OnCall = func(d time.Duration, err error) { m.Call(d, redisstore.ErrorKind(err)) }
	o.OnScriptLoad = m.ScriptLoad
	o.OnCacheHit = m.CacheHits
}

// redisLogger carries go-redis's own log lines (dial failures, Sentinel and
// Cluster topology changes), which it would otherwise print raw to stderr,
// into slog: lines reporting a failure as throttled warnings (one per
// logging.DefaultEvery, with the count of those dropped), the rest at
// debug. go-redis logs through one process-wide logger, so the lines do
// not say which backend they concern; the failing backend shows in the
// breaker's state changes and the metrics.
type redisLogger struct {
	log      *slog.Logger
	throttle *logging.Throttle
}

// routeRedisLogs makes log the destination of go-redis's log lines for the
// whole process.
func routeRedisLogs(log *slog.Logger) {
	redis.SetLogger(redisLogger{log: log, throttle: &logging.Throttle{}})
}

// Printf implements go-redis's internal.Logging.
func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !l.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	msg := strings.TrimSpace(strings.TrimPrefix(fmt.Sprintf(format, v...), "redis: "))
	if redisFailure(msg) {
		l.throttle.Warn(ctx, l.log, "redis-client", "redis client", "line", msg)
		return
	}
	l.log.DebugContext(ctx, "redis client", "line", msg)
}

// redisFailure reports whether a go-redis log line reports a failure (its
// lines carry no level).
func redisFailure(msg string) bool {
	m := strings.ToLower(msg)
	for _, w := range []string{"fail", "error", "panic", "unable", "cannot", "err="} {
		if strings.Contains(m, w) {
			return true
		}
	}
	return false
}
