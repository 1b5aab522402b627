// Package memstore is the embedded, bounded in-memory limiter.Store.
//
// Counters live in a fixed number of shards chosen by a hash of the key, each
// a map guarded by its own mutex, so there is no global lock. The store holds
// at most Options.MaxKeys counters. Eviction policy: MaxKeys is divided evenly
// between the shards; when a shard that is full needs room for a new key:
//
//  1. it samples up to 8 of its counters, spread over the shard from a random
//     start, and reuses the first expired one it finds;
//  2. else, unless it did so within its last MaxKeys/shards/8 full inserts, it
//     removes all its expired counters in one pass and reuses one of them;
//  3. else it evicts the sampled counter whose loss admits the least: the
//     one with the fewest used hits (its limit's capacity minus its
//     remaining, as of its last update; a refusing counter's whole
//     capacity), ties broken by the earliest expiry.
//
// Evicting an unexpired counter forgets its hits, so that key is admitted as
// if new: under a flood of distinct keys the store stays bounded and fails
// open for the evicted keys; Evictions counts them. The policy bounds what a
// client gains by flooding: fresh, barely used counters (one hit each) are
// evicted before a counter that is refusing or heavily used, so a client
// cannot push out its own refusing counter (say per-ip, 5 used) by sending a
// new value of another descriptor each time. A counter with u used hits is
// evicted only when every sampled counter also has at least u, that is after
// the client has put u hits into most of the shard's counters: eviction
// gives back at most as many hits as the flood spent. A sweeper goroutine
// removes expired counters every SweepInterval; Close stops it.
package memstore

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// Defaults for the zero Options.
const (
	DefaultMaxKeys       = 1_000_000
	DefaultShards        = 256
	DefaultSweepInterval = 10 * time.Second
	// minKeysPerShard limits the default shard count for small MaxKeys, so
	// that the even split between shards does not make shards tiny.
	minKeysPerShard = 1024
	// evictSamples is how many counters a full shard looks at to evict one.
	evictSamples = 8
)

// ErrInvalidOptions is wrapped by New for options it cannot use.
var ErrInvalidOptions = errors.New("invalid options")

// Options configures a Store. Zero values are the documented defaults.
// Only MaxKeys is a setting of the server file (max_keys of a memory
// backend); the rest are for tests and benchmarks.
type Options struct {
	// MaxKeys bounds the number of counters kept (default 1,000,000). It is
	// split evenly between the shards, and a full shard evicts (see the
	// package doc) even when others have room.
	MaxKeys int `yaml:"max_keys"`
	// Shards is the number of independently locked shards, rounded up to a
	// power of two and at most MaxKeys (default 256, fewer when MaxKeys is
	// below 256*1024, so that each shard holds at least 1024 counters).
	Shards int
	// SweepInterval is how often expired counters are removed (default 10s).
	// A negative value disables the sweeper; expired counters are then only
	// reused when their shard is full.
	SweepInterval time.Duration `yaml:"-"`
	// Now returns the current time (default time.Now).
	Now func() time.Time `yaml:"-"`
}

// MaxKeysLimit is the largest MaxKeys: 2^32 counters (far more than
// memory holds: each takes 100 bytes or more).
const MaxKeysLimit = 1 << 32

// maxShards bounds Shards: a larger value counts as maxShards.
const maxShards = 1 << 20

// Validate fills in the default of MaxKeys and returns every problem as a
// *field.Error whose path is relative to o ("max_keys", "shards"). New
// accepts exactly the options it accepts.
func (o *Options) Validate() error {
	var errs []error
	switch {
	case o.MaxKeys == 0:
		o.MaxKeys = DefaultMaxKeys
	case o.MaxKeys < 0:
		errs = append(errs, field.Errorf("max_keys", "%d is negative: expected the maximum number of counters kept, e.g. %d", o.MaxKeys, DefaultMaxKeys))
	case o.MaxKeys > MaxKeysLimit:
		errs = append(errs, field.Errorf("max_keys", "%d is too large: expected at most %d", o.MaxKeys, int64(MaxKeysLimit)))
	}
	switch {
	case o.Shards < 0:
		errs = append(errs, field.Errorf("shards", "%d is negative", o.Shards))
	case errs == nil && o.MaxKeys/o.shardCount() >= math.MaxInt32:
		errs = append(errs, field.Errorf("shards", "%d shards cannot index max_keys %d: expected at least %d shards", o.Shards, o.MaxKeys, o.MaxKeys/math.MaxInt32+1))
	}
	return errors.Join(errs...)
}

// shardCount returns the number of shards of a Store with o (MaxKeys set):
// a power of two, at most MaxKeys.
func (o *Options) shardCount() int {
	var n int
	if o.Shards == 0 {
		// The largest power of two <= maxKeys/minKeysPerShard, at most DefaultShards.
		n = 1 << (bits.Len(uint(min(DefaultShards, max(1, o.MaxKeys/minKeysPerShard)))) - 1)
	} else {
		n = 1 << bits.Len(uint(min(o.Shards, maxShards)-1)) // round up to a power of two
	}
	for n > o.MaxKeys {
		n >>= 1
	}
	return n
}

// Store is a sharded in-memory limiter.Store. Its methods are safe for
// concurrent use.
type Store struct {
	now       func() time.Time
	seed      maphash.Seed
	mask      uint64
	shards    []shard
	evictions atomic.Uint64

	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

var _ limiter.Store = (*Store)(nil)

// freeSlot marks an unused entry in a shard's slab.
const freeSlot = math.MinInt64

// entry is one counter. exp is limiter.Limit.Expiry of st in Unix
// nanoseconds, or freeSlot; used is the eviction weight of its last
// update (see usedHits).
type entry struct {
	key  string
	st   limiter.State
	exp  int64
	used int64
}

// usedHits is how many hits evicting a counter would give back, from the
// Result of its last update: its capacity when refusing, else capacity
// minus remaining.
func usedHits(r *limiter.Result) int64 {
	if !r.Allowed {
		return max(r.Limit, 1)
	}
	return max(0, r.Limit-r.Remaining)
}

// shard holds its counters in a slab, indexed by a map from key to slot, so
// the map holds no pointers to entries and a full shard can sample its
// counters by slot. Slots of removed counters go to free and are reused.
type shard struct {
	mu   sync.Mutex
	idx  map[string]int32
	ents []entry
	free []int32
	max  int
	rng  uint64
	// fullInserts counts inserts into the full shard since it last swept
	// itself (see insert).
	fullInserts int
	_           [40]byte // keeps neighbouring shards' mutexes on separate cache lines
}

// New returns a Store. It starts the sweeper unless opts.SweepInterval is
// negative; Close stops it.
func New(opts Options) (*Store, error) {
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("memstore: %w: %w", ErrInvalidOptions, err)
	}
	maxKeys, n := opts.MaxKeys, opts.shardCount()
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	s := &Store{
		now:    now,
		seed:   maphash.MakeSeed(),
		mask:   uint64(n - 1),
		shards: make([]shard, n),
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.idx = make(map[string]int32)
		sh.max = maxKeys / n
		if i < maxKeys%n {
			sh.max++
		}
		sh.rng = rand.Uint64() | 1
	}
	interval := opts.SweepInterval
	if interval == 0 {
		interval = DefaultSweepInterval
	}
	if interval > 0 {
		s.stop = make(chan struct{})
		s.done = make(chan struct{})
		go s.sweepLoop(interval)
	}
	return s, nil
}

// Close stops the sweeper and waits for it to return. The Store keeps
// counting after Close; only the background sweeping stops. Close is
// idempotent and always returns nil.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
	})
	return nil
}

// Len returns the number of counters held, including expired ones the sweeper
// has not removed yet.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.idx)
		sh.mu.Unlock()
	}
	return n
}

// Evictions returns how many unexpired counters have been evicted to make
// room for new keys since New.
func (s *Store) Evictions() uint64 { return s.evictions.Load() }

// shardIndex returns the shard of key. maphash.String does not allocate.
func (s *Store) shardIndex(key string) uint32 {
	return uint32(maphash.String(s.seed, key) & s.mask)
}

// Take implements limiter.Store. It applies the requests with
// limiter.ApplyAll under the locks of the shards involved, taken in shard
// order, so a call is atomic: in CountIfAllAllowed mode either every counter
// of the call is updated or none is. Keys are copied when a counter is
// created, never retained otherwise. For a key already present and one
// request it does not allocate. It fails only for invalid requests (see
// limiter.CheckRequests) or when ctx is already done.
func (s *Store) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore: take %d keys: %w", len(reqs), err)
	}
	if err := limiter.CheckRequests(reqs, res); err != nil {
		return fmt.Errorf("memstore: take %d keys: %w", len(reqs), err)
	}
	switch len(reqs) {
	case 0:
		return nil
	case 1:
		s.takeOne(mode, reqs, res)
		return nil
	}
	s.takeMany(mode, reqs, res)
	return nil
}

// takeOne is Take for a single request (len(reqs) == 1), without the
// bookkeeping of takeMany.
//
// The clock is read under the shard lock here and in takeMany, so that the
// calls applied to one counter see non-decreasing times; otherwise a call
// that read the clock just before a window boundary but locked after a call
// from the next window would reset that window's count.
func (s *Store) takeOne(mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) {
	req := &reqs[0]
	sh := &s.shards[s.shardIndex(req.Key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	now := s.now()
	var states [1]limiter.State
	i, ok := sh.idx[req.Key]
	if ok {
		states[0] = sh.ents[i].st
	}
	limiter.ApplyAll(mode, now, reqs, states[:], res)
	switch {
	case ok:
		e := &sh.ents[i]
		e.st = states[0]
		e.exp = req.Limit.Expiry(e.st).UnixNano()
		e.used = usedHits(&res[0])
	case states[0] != (limiter.State{}):
		s.insert(sh, entry{key: req.Key, st: states[0], exp: req.Limit.Expiry(states[0]).UnixNano(), used: usedHits(&res[0])}, now.UnixNano())
	}
}

// stackRequests is how many requests takeMany handles without allocating.
const stackRequests = 8

// takeMany is Take for two or more requests: it locks every shard involved
// in ascending order (so concurrent calls cannot deadlock), copies each
// key's stored state (zero for a new key), applies the call, writes the
// states back and stores the new keys whose state is not zero.
func (s *Store) takeMany(mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) {
	n := len(reqs)
	var (
		shardBuf [stackRequests]uint32
		lockBuf  [stackRequests]uint32
		slotBuf  [stackRequests]int32
		stateBuf [stackRequests]limiter.State
	)
	var (
		shardOf, locks []uint32
		slots          []int32
		states         []limiter.State
	)
	if n <= stackRequests {
		shardOf, locks, slots, states = shardBuf[:n:n], lockBuf[:0:n], slotBuf[:n:n], stateBuf[:n:n]
	} else {
		shardOf, locks = make([]uint32, n), make([]uint32, 0, n)
		slots, states = make([]int32, n), make([]limiter.State, n)
	}
	for i := range reqs {
		shardOf[i] = s.shardIndex(reqs[i].Key)
		locks = insertSorted(locks, shardOf[i])
	}
	for _, li := range locks {
		s.shards[li].mu.Lock()
	}
	now := s.now()
	for i := range reqs {
		sh := &s.shards[shardOf[i]]
		j, ok := sh.idx[reqs[i].Key]
		if !ok {
			j = -1
		}
		slots[i] = j
		if ok {
			states[i] = sh.ents[j].st
		}
	}
	limiter.ApplyAll(mode, now, reqs, states, res)
	// Write back before inserting: an insert may evict, moving slots.
	for i := range reqs {
		if j := slots[i]; j >= 0 {
			e := &s.shards[shardOf[i]].ents[j]
			e.st = states[i]
			e.exp = reqs[i].Limit.Expiry(e.st).UnixNano()
			e.used = usedHits(&res[i])
		}
	}
	nowNs := now.UnixNano()
	for i := range reqs {
		if slots[i] >= 0 || states[i] == (limiter.State{}) {
			continue
		}
		sh := &s.shards[shardOf[i]]
		if _, dup := sh.idx[reqs[i].Key]; dup {
			continue // inserted for an earlier request with the same key
		}
		s.insert(sh, entry{key: reqs[i].Key, st: states[i], exp: reqs[i].Limit.Expiry(states[i]).UnixNano(), used: usedHits(&res[i])}, nowNs)
	}
	for i := len(locks) - 1; i >= 0; i-- {
		s.shards[locks[i]].mu.Unlock()
	}
}

// insertSorted adds v to the ascending, duplicate-free set xs.
func insertSorted(xs []uint32, v uint32) []uint32 {
	i := len(xs)
	for i > 0 && xs[i-1] > v {
		i--
	}
	if i > 0 && xs[i-1] == v {
		return xs
	}
	xs = append(xs, 0)
	copy(xs[i+1:], xs[i:])
	xs[i] = v
	return xs
}

// insert stores a new counter e in sh, whose lock the caller holds; e.key
// may alias a reused buffer and is copied. A full shard first evicts one
// counter as the package doc describes.
func (s *Store) insert(sh *shard, e entry, now int64) {
	e.key = strings.Clone(e.key)
	var slot int32
	switch {
	case len(sh.idx) < sh.max && len(sh.free) > 0:
		slot = sh.free[len(sh.free)-1]
		sh.free = sh.free[:len(sh.free)-1]
	case len(sh.idx) < sh.max:
		slot = int32(len(sh.ents))
		sh.ents = append(sh.ents, entry{})
	default:
		// Full: every slot is in use (len(ents) == max, no free slots).
		sh.fullInserts++
		slot = sh.victim(now)
		if sh.ents[slot].exp > now && sh.fullInserts > sh.max/8 {
			// The sample found no expired counter, but the shard may have
			// some: reclaim them all rather than evict a live one. At most
			// one full pass per max/8 inserts, so a flood of new keys costs
			// O(8) slots scanned per insert on average.
			sh.fullInserts = 0
			if sh.sweep(now) > 0 {
				slot = sh.free[len(sh.free)-1]
				sh.free = sh.free[:len(sh.free)-1]
				break
			}
		}
		if sh.ents[slot].exp > now {
			s.evictions.Add(1)
		}
		delete(sh.idx, sh.ents[slot].key)
	}
	sh.ents[slot] = e
	sh.idx[e.key] = slot
}

// victim picks the slot to reuse in a full shard: the first expired counter
// among up to evictSamples slots spread evenly from a random start, or else
// the sampled counter with the fewest used hits, the one that expires first
// among those.
func (sh *shard) victim(now int64) int32 {
	n := uint64(len(sh.ents))
	// xorshift64: cheap, and the shard lock is held.
	sh.rng ^= sh.rng << 13
	sh.rng ^= sh.rng >> 7
	sh.rng ^= sh.rng << 17
	start := sh.rng % n
	stride := max(1, n/evictSamples)
	best := int32(-1)
	for k := range min(n, evictSamples) {
		j := int32((start + k*stride) % n)
		e := &sh.ents[j]
		if e.exp <= now {
			return j
		}
		if best < 0 || e.used < sh.ents[best].used || e.used == sh.ents[best].used && e.exp < sh.ents[best].exp {
			best = j
		}
	}
	return best
}

// sweepLoop runs sweep every interval until Close.
func (s *Store) sweepLoop(interval time.Duration) {
	defer close(s.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep removes every expired counter, one shard at a time (each shard is
// locked for one pass over its slab).
func (s *Store) sweep() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.sweep(s.now().UnixNano())
		sh.mu.Unlock()
	}
}

// sweep frees the slots of sh's expired counters and returns how many it
// freed. The caller holds sh.mu.
func (sh *shard) sweep(now int64) int {
	n := 0
	for j := range sh.ents {
		e := &sh.ents[j]
		if e.exp == freeSlot || e.exp > now {
			continue
		}
		delete(sh.idx, e.key)
		*e = entry{exp: freeSlot}
		sh.free = append(sh.free, int32(j))
		n++
	}
	return n
}
