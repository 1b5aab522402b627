package logging

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultEvery is Throttle's default interval.
const DefaultEvery = 10 * time.Second

// maxKeys bounds the keys a Throttle tracks; further keys share one slot.
const maxKeys = 1024

// Throttle lets through at most one message per key and interval, and
// counts the ones it drops, so that a failing backend (called by every
// request) does not flood the log: the next message that gets through
// carries suppressed=N. Keys name the trouble, e.g. "backend/redis-0";
// they must come from configuration, never from requests.
//
// The zero Throttle is ready to use. It is safe for concurrent use; a
// message for a known key takes no lock.
type Throttle struct {
	// Every is the least time between two messages of one key (default
	// DefaultEvery).
	Every time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time

	keys     sync.Map // string -> *throttleKey
	n        atomic.Int32
	mu       sync.Mutex // serializes adding keys
	overflow throttleKey
}

type throttleKey struct {
	next    atomic.Int64 // unix ns before which messages are dropped
	dropped atomic.Int64
}

func (t *Throttle) key(k string) *throttleKey {
	if v, ok := t.keys.Load(k); ok {
		return v.(*throttleKey)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if v, ok := t.keys.Load(k); ok {
		return v.(*throttleKey)
	}
	if t.n.Load() >= maxKeys {
		return &t.overflow
	}
	tk := new(throttleKey)
	t.keys.Store(k, tk)
	t.n.Add(1)
	return tk
}

// Allow reports whether a message for key may be logged now and, when it
// may, how many were dropped since the last one that was.
func (t *Throttle) Allow(key string) (ok bool, suppressed int64) {
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	every := t.Every
	if every <= 0 {
		every = DefaultEvery
	}
	tk := t.key(key)
	ns := now().UnixNano()
	next := tk.next.Load()
	if ns < next || !tk.next.CompareAndSwap(next, ns+int64(every)) {
		tk.dropped.Add(1)
		return false, 0
	}
	return true, tk.dropped.Swap(0)
}

// Log logs msg at level with args (and "key", key) unless key logged
// within the interval; it adds "suppressed", N when N messages were
// dropped since the last one.
func (t *Throttle) Log(ctx context.Context, log *slog.Logger, level slog.Level, key, msg string, args ...any) {
	if !log.Enabled(ctx, level) {
		return
	}
	ok, n := t.Allow(key)
	if !ok {
		return
	}
	args = append(args, "key", key)
	if n > 0 {
		args = append(args, "suppressed", n)
	}
	log.Log(ctx, level, msg, args...)
}

// Warn is Log at slog.LevelWarn.
func (t *Throttle) Warn(ctx context.Context, log *slog.Logger, key, msg string, args ...any) {
	t.Log(ctx, log, slog.LevelWarn, key, msg, args...)
}
