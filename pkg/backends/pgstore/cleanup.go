package pgstore

import (
	"context"
	"time"
)

// Cleanup deletes expired rows (by the database server's clock) in
// statements of at most batch rows (0: Settings.CleanupBatch), each its own
// transaction that skips rows a Take holds, until a statement finds fewer
// than batch rows or ctx ends. It returns the rows deleted. Several
// replicas may run it at once.
func (s *Store) Cleanup(ctx context.Context, batch int) (rows int64, err error) {
	if batch <= 0 {
		batch = s.settings.CleanupBatch
	}
	sql := "SELECT " + quoteIdent(s.schema) + ".cleanup($1)"
	for {
		if err := ctx.Err(); err != nil {
			return rows, errorf("cleanup: %w", err)
		}
		var n int64
		err := s.pool.QueryRow(ctx, sql, int32(min(batch, 1<<30))).Scan(&n)
		if s.settings.OnCleanup != nil {
			s.settings.OnCleanup(n, err)
		}
		if err != nil {
			return rows, errorf("cleanup: %w", err)
		}
		rows += n
		if n < int64(batch) {
			return rows, nil
		}
	}
}

// startCleanup runs Cleanup every CleanupInterval until Close, which
// cancels a round in progress. Each statement is bounded by the statement
// timeout, not the round. Errors are reported through Settings.OnCleanup
// only: the next round retries.
func (s *Store) startCleanup() {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-s.stop
		cancel()
	}()
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.settings.CleanupInterval)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
			}
			if s.ready.Load() {
				_, _ = s.Cleanup(ctx, 0)
			}
		}
	}()
}
