package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/logging"
)

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
