package lease

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Defaults of Options.
const (
	// DefaultMaxKeys bounds the leased keys of a Store when Options.MaxKeys
	// is 0.
	DefaultMaxKeys = 4096
	// DefaultReturnAfter is Options.ReturnAfter's default.
	DefaultReturnAfter = time.Second
)

// ReturnTimeout bounds each call that returns a block, and Close's returns
// all together.
const ReturnTimeout = 2 * time.Second

// Options configures a Store. Zero values are the documented defaults.
type Options struct {
	// MaxKeys bounds how many keys the Store leases at once (default
	// DefaultMaxKeys); a full table evicts the least recently used of a few
	// sampled keys for a new hot one.
	MaxKeys int
	// Now is the clock (default time.Now). Blocks are timed on it, from the
	// moment they are asked for, so it must not run slower than the store's.
	Now func() time.Time
	// ReturnAfter: a block whose key has had no hit on this replica for
	// this long gives its unused hits back to the store, when the store can
	// take them back (redisstore; default DefaultReturnAfter), and so do
	// the blocks of evicted keys; Close returns every block. Negative:
	// blocks are only returned by Close.
	ReturnAfter time.Duration
}

// Stats counts what a Store did, for metrics, tests and benchmarks.
type Stats struct {
	// Local is the requests admitted from a block, without a store call.
	Local int64
	// Blocks is the blocks the store granted; Refused those it refused.
	Blocks, Refused int64
	// Evicted is the leased keys dropped from a full table.
	Evicted int64
	// Returned is the unused hits of blocks given back to the store.
	Returned int64
}

// Store is a limiter.Store that leases hot keys' quota from the Store it
// wraps (see the package documentation). It is safe for concurrent use.
type Store struct {
	inner limiter.Store
	now   func() time.Time
	table *table
	// marked is inner when it takes blocks that can be returned; nil
	// otherwise (blocks expire).
	marked blockStore

	local, blocks, refused, evicted, returned atomic.Int64
	bound                                     atomic.Int64 // BoundCalls's, in nanoseconds: 0 none

	// Returns: evicted blocks wait in pending for the returner goroutine,
	// which also returns idle blocks; Close stops it.
	mu        sync.Mutex
	pending   []pendingReturn
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// blockStore is a store that marks the blocks it counts and can take
// their unused hits back (redisstore.Store).
type blockStore interface {
	TakeBlock(ctx context.Context, r limiter.Request, res *limiter.Result) (mark int64, err error)
	ReturnBlock(ctx context.Context, r limiter.Request, mark, used int64) (int64, error)
}

// pendingReturn is a detached block of key to return.
type pendingReturn struct {
	key string
	unused
}

// maxPending bounds the evicted blocks waiting to be returned; beyond it
// they are stranded, as without returns.
const maxPending = 1024

var _ limiter.Store = (*Store)(nil)

// New returns a Store that leases from inner, a store shared by every
// replica (Redis).
func New(inner limiter.Store, opts Options) (*Store, error) {
	if inner == nil {
		return nil, errors.New("lease: nil store")
	}
	if opts.MaxKeys < 0 {
		return nil, fmt.Errorf("lease: max keys %d is negative", opts.MaxKeys)
	}
	if opts.MaxKeys == 0 {
		opts.MaxKeys = DefaultMaxKeys
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ReturnAfter == 0 {
		opts.ReturnAfter = DefaultReturnAfter
	}
	s := &Store{inner: inner, now: opts.Now, table: newTable(opts.MaxKeys)}
	if bs, ok := inner.(blockStore); ok {
		s.marked = bs
		if opts.ReturnAfter > 0 {
			s.stop, s.done = make(chan struct{}), make(chan struct{})
			go s.returner(opts.ReturnAfter)
		}
	}
	return s, nil
}

// Inner returns the wrapped store.
func (s *Store) Inner() limiter.Store { return s.inner }

// Ping checks the wrapped store when it can be probed
// (chain.Pinger), and reports nil otherwise.
func (s *Store) Ping(ctx context.Context) error {
	if p, ok := s.inner.(interface{ Ping(context.Context) error }); ok {
		return p.Ping(ctx)
	}
	return nil
}

// BoundCalls gives d to the wrapped store when it bounds its own calls
// (redisstore.Store.BoundCalls), and reports whether it does. Take then
// bounds a call that may reach the store more than once (taking a block,
// then the rest) by d in all, with a context.
func (s *Store) BoundCalls(d time.Duration) bool {
	b, ok := s.inner.(interface{ BoundCalls(time.Duration) bool })
	if !ok || !b.BoundCalls(d) {
		s.bound.Store(0)
		return false
	}
	s.bound.Store(int64(max(d, 0)))
	return true
}

// Stats returns the counts so far.
func (s *Store) Stats() Stats {
	return Stats{Local: s.local.Load(), Blocks: s.blocks.Load(), Refused: s.refused.Load(), Evicted: s.evicted.Load(), Returned: s.returned.Load()}
}

// Len returns the number of leased keys in the table.
func (s *Store) Len() int {
	n := 0
	for i := range s.table.shards {
		sh := &s.table.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// localHit is a request admitted from a block, to give back if the call
// must count nothing.
type localHit struct {
	i   int
	e   *entry
	sh  *shard
	gen uint64
}

// stackCall is how many requests Take plans without allocating.
const stackCall = 8

// Take implements limiter.Store. Requests without a Lease, reads and
// calls that name a key twice go to the inner store as they are, in one
// call; see the package documentation for the others.
func (s *Store) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	if !anyLease(reqs) || sameKeyTwice(reqs) {
		return s.inner.Take(ctx, mode, reqs, res)
	}
	if err := limiter.CheckRequests(reqs, res); err != nil {
		return fmt.Errorf("lease: take %d keys: %w", len(reqs), err)
	}
	if d := time.Duration(s.bound.Load()); d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	var buf [stackCall]localHit
	hits := buf[:0]
	for i := range reqs {
		r := &reqs[i]
		if r.Lease == nil || r.Hits == 0 {
			continue
		}
		h, ok, err := s.admit(ctx, r, &res[i])
		if err != nil {
			s.giveBack(reqs, hits)
			return fmt.Errorf("lease: take a block: %w", err)
		}
		if ok {
			h.i = i
			hits = append(hits, h)
		}
	}
	if len(hits) == 0 {
		sent := s.now()
		err := s.inner.Take(ctx, mode, reqs, res)
		if err == nil {
			s.learn(sent, reqs, res)
		}
		return err
	}
	s.local.Add(int64(len(hits)))
	if len(hits) == len(reqs) {
		return nil
	}
	return s.takeRest(ctx, mode, reqs, res, hits)
}

// TakeLocal implements chain.LocalTaker: it answers the call when every
// request is leased and its key's block holds its hits, and otherwise
// reports false having changed no block (res may have been written). It
// takes no block and counts no hotness: Take does.
func (s *Store) TakeLocal(mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) bool {
	if len(reqs) == 0 || len(reqs) > stackCall || len(res) < len(reqs) || sameKeyTwice(reqs) {
		return false
	}
	var buf [stackCall]localHit
	hits := buf[:0]
	now := s.now()
	for i := range reqs {
		r := &reqs[i]
		if r.Lease == nil || r.Hits <= 0 {
			s.giveBack(reqs, hits)
			return false
		}
		sh, _ := s.table.shard(r.Key)
		sh.mu.Lock()
		e := sh.entries[r.Key]
		if e == nil || e.limit != r.Limit || !e.take(now, r.Hits, &res[i]) {
			sh.mu.Unlock()
			s.giveBack(reqs, hits)
			return false
		}
		e.lastUsed = now
		hits = append(hits, localHit{i: i, e: e, sh: sh, gen: e.gen})
		sh.mu.Unlock()
	}
	s.local.Add(int64(len(hits)))
	return true
}

// takeRest sends the requests not admitted from a block to the inner store
// in one call. When that fails, or refuses in CountIfAllAllowed mode, the
// block hits are given back.
func (s *Store) takeRest(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result, hits []localHit) error {
	n := len(reqs) - len(hits)
	sub, subRes := make([]limiter.Request, 0, n), make([]limiter.Result, n)
	idx := make([]int, 0, n)
	k := 0
	for i := range reqs {
		if k < len(hits) && hits[k].i == i {
			k++
			continue
		}
		sub = append(sub, reqs[i])
		idx = append(idx, i)
	}
	sent := s.now()
	if err := s.inner.Take(ctx, mode, sub, subRes); err != nil {
		s.giveBack(reqs, hits)
		s.local.Add(-int64(len(hits)))
		return err
	}
	refused := false
	for j, i := range idx {
		res[i] = subRes[j]
		refused = refused || (!subRes[j].Allowed && !sub[j].Shadow)
	}
	s.learn(sent, sub, subRes)
	if mode == limiter.CountIfAllAllowed && refused {
		// The call counts nothing: the block hits go back, and their
		// results describe the block without them (as a read would).
		s.giveBack(reqs, hits)
		s.local.Add(-int64(len(hits)))
		for _, h := range hits {
			res[h.i].Remaining = min(res[h.i].Remaining+reqs[h.i].Hits, res[h.i].Limit)
		}
	}
	return nil
}

// admit answers r from its key's block, taking a new block when the key is
// hot and the block cannot hold r's hits. It reports false when r must go
// to the inner store as a normal request; an error is the inner store's
// (a block take that failed).
func (s *Store) admit(ctx context.Context, r *limiter.Request, res *limiter.Result) (localHit, bool, error) {
	sh, h := s.table.shard(r.Key)
	now := s.now()
	sh.mu.Lock()
	e := sh.entries[r.Key]
	if e == nil {
		if r.Limit.Requests == 0 || !sh.hot(h, now, r.Limit.Period, r.Lease.EffectiveHotAfter()) {
			sh.mu.Unlock()
			return localHit{}, false, nil
		}
		var victim string
		var old *entry
		if e, victim, old = sh.insert(r.Key, now); old != nil {
			s.evicted.Add(1)
			s.retire(victim, &old.block, now)
		}
		if e != nil {
			// The key has just turned hot: this request is a normal call
			// still, whose answer (learn) sizes the first block, so that a
			// key already at its limit never costs a refused block take.
			e.block = block{limit: r.Limit}
		}
		sh.mu.Unlock()
		return localHit{}, false, nil
	}
	if e.limit != r.Limit {
		// The key's limit changed (a reload): what was known is void, and
		// the block goes back under the limit it was counted with.
		s.retire(r.Key, &e.block, now)
		e.block = block{limit: r.Limit, gen: e.gen + 1}
	}
	waited, takes := false, 0
	for {
		if e.take(now, r.Hits, res) {
			e.lastUsed = now
			gen := e.gen
			sh.mu.Unlock()
			return localHit{e: e, sh: sh, gen: gen}, true, nil
		}
		if e.wait != nil {
			// Another request of this replica is taking a block: wait for
			// it once rather than take one more.
			if waited {
				break
			}
			waited = true
			ch := e.wait
			sh.mu.Unlock()
			select {
			case <-ch:
			case <-ctx.Done():
				return localHit{}, false, nil
			}
			now = s.now()
			sh.mu.Lock()
			continue
		}
		size := e.size(now, r.Hits, r.Lease.EffectiveFraction())
		if size == 0 || takes == 2 {
			break
		}
		takes++
		if err := s.takeBlock(ctx, sh, e, r, size); err != nil {
			sh.mu.Unlock()
			return localHit{}, false, err
		}
		if e.limit != r.Limit {
			break // the limit changed meanwhile: r goes as a normal call
		}
		now = s.now()
	}
	sh.mu.Unlock()
	return localHit{}, false, nil
}

// takeBlock asks the inner store for a block of size hits of r's key
// (sh.mu held on entry and on return, released during the call).
func (s *Store) takeBlock(ctx context.Context, sh *shard, e *entry, r *limiter.Request, size int64) error {
	ch := make(chan struct{})
	e.wait = ch
	sh.mu.Unlock()
	sent := s.now()
	one := [1]limiter.Request{{Key: r.Key, Limit: r.Limit, Hits: size}}
	var out [1]limiter.Result
	var err error
	mark := int64(-1)
	if s.marked != nil {
		mark, err = s.marked.TakeBlock(ctx, one[0], &out[0])
	} else {
		err = s.inner.Take(ctx, limiter.CountIfAllAllowed, one[:], out[:])
	}
	sh.mu.Lock()
	e.wait = nil
	close(ch)
	switch {
	case err != nil:
		return err
	case e.limit != r.Limit:
		// The limit changed meanwhile: the block goes back unused.
		if out[0].Allowed && mark >= 0 && s.stop != nil {
			s.queueReturn(r.Key, unused{limit: r.Limit, mark: mark, granted: size})
		}
	case out[0].Allowed:
		e.grant(sent, size, out[0], mark)
		s.blocks.Add(1)
	default:
		e.learn(sent, out[0])
		s.refused.Add(1)
	}
	return nil
}

// giveBack returns the hits admitted from blocks in a call that counts
// nothing.
func (s *Store) giveBack(reqs []limiter.Request, hits []localHit) {
	for _, h := range hits {
		h.sh.mu.Lock()
		h.e.giveBack(h.gen, reqs[h.i].Hits)
		h.sh.mu.Unlock()
	}
}

// learn records the inner store's answers for leased keys that have an
// entry, so that the next block is sized by the key's true remaining quota;
// sent is when the call was sent.
func (s *Store) learn(sent time.Time, reqs []limiter.Request, res []limiter.Result) {
	for i := range reqs {
		r := &reqs[i]
		if r.Lease == nil {
			continue
		}
		sh, _ := s.table.shard(r.Key)
		sh.mu.Lock()
		if e := sh.entries[r.Key]; e != nil && e.limit == r.Limit {
			e.learn(sent, res[i])
		}
		sh.mu.Unlock()
	}
}

// anyLease reports whether a request of reqs may lease.
func anyLease(reqs []limiter.Request) bool {
	for i := range reqs {
		if reqs[i].Lease != nil {
			return true
		}
	}
	return false
}

// sameKeyTwice reports whether two requests name one key: they share a
// counter, which only the inner store applies in order.
func sameKeyTwice(reqs []limiter.Request) bool {
	for i := 1; i < len(reqs); i++ {
		for k := range i {
			if reqs[k].Key == reqs[i].Key {
				return true
			}
		}
	}
	return false
}
