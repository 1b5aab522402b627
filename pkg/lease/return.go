package lease

import (
	"context"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Close stops returning idle blocks and returns every block left, within
// ReturnTimeout in all, so that the other replicas may admit their hits
// (a replica shutting down). It does not close the wrapped store. Takes
// after Close still work; their blocks expire. It is safe to call more
// than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.marked == nil {
			return
		}
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
		ctx, cancel := context.WithTimeout(context.Background(), ReturnTimeout)
		defer cancel()
		s.returnBlocks(ctx, 0)
	})
	return nil
}

// returner returns the blocks of keys idle for after, every quarter of
// it, and the blocks of evicted keys queued meanwhile, until Close.
func (s *Store) returner(after time.Duration) {
	defer close(s.done)
	t := time.NewTicker(max(after/4, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.returnBlocks(context.Background(), after)
		}
	}
}

// returnBlocks returns the queued blocks and those of the keys with no
// hit for idle (0: every key), one store call each.
func (s *Store) returnBlocks(ctx context.Context, idle time.Duration) {
	s.mu.Lock()
	list := s.pending
	s.pending = nil
	s.mu.Unlock()
	now := s.now()
	for i := range s.table.shards {
		sh := &s.table.shards[i]
		sh.mu.Lock()
		for k, e := range sh.entries {
			if e.wait != nil || now.Sub(e.lastUsed) < idle {
				continue
			}
			if u, ok := e.detach(now); ok {
				list = append(list, pendingReturn{key: k, unused: u})
			}
		}
		sh.mu.Unlock()
	}
	for _, p := range list {
		s.returnOne(ctx, p)
	}
}

// returnOne gives a detached block's unused hits back to the store. A
// failed return strands them until they expire, as without returns.
func (s *Store) returnOne(ctx context.Context, p pendingReturn) {
	ctx, cancel := context.WithTimeout(ctx, ReturnTimeout)
	defer cancel()
	r := limiter.Request{Key: p.key, Limit: p.limit, Hits: p.granted}
	if n, err := s.marked.ReturnBlock(ctx, r, p.mark, p.used); err == nil {
		s.returned.Add(n)
	}
}

// retire detaches b, the block of key, and queues what it holds unused
// for the returner (sh.mu of its shard held), when a returner runs: the key
// was evicted or its limit changed.
func (s *Store) retire(key string, b *block, now time.Time) {
	if s.stop == nil {
		return
	}
	if u, ok := b.detach(now); ok {
		s.queueReturn(key, u)
	}
}

// queueReturn queues the detached block of an evicted key for the
// returner (sh.mu of its shard held); beyond maxPending it is stranded.
func (s *Store) queueReturn(key string, u unused) {
	s.mu.Lock()
	if len(s.pending) < maxPending {
		s.pending = append(s.pending, pendingReturn{key: key, unused: u})
	}
	s.mu.Unlock()
}
