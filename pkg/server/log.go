package server

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"
)

// logEvery is the least time between two rate-limited warnings.
const logEvery = 10 * time.Second

// logLimiter lets through at most one warning per logEvery, and counts the
// ones it drops, so that a failing backend does not flood the log.
type logLimiter struct {
	next    atomic.Int64 // unix ns before which warnings are dropped
	dropped atomic.Int64
}

func (l *logLimiter) log(lg *slog.Logger, msg string, args ...any) {
	now := time.Now().UnixNano()
	next := l.next.Load()
	if now < next || !l.next.CompareAndSwap(next, now+int64(logEvery)) {
		l.dropped.Add(1)
		return
	}
	if n := l.dropped.Swap(0); n > 0 {
		args = append(args, "suppressed", n)
	}
	lg.Log(context.Background(), slog.LevelWarn, msg, args...)
}
