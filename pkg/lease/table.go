package lease

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"
)

// shards splits the table so that hot keys on different shards do not
// share a lock.
const shards = 32

// candidates is the number of hotness slots per shard: a fixed array, so a
// key that is never hot costs no allocation and no memory that grows.
const candidates = 128

// evictSample is how many entries a full shard samples to evict one.
const evictSample = 8

// entry is one leased key.
type entry struct {
	block
	lastUsed time.Time
	// wait is closed when the block take in flight ends; nil when none is.
	wait chan struct{}
}

// candidate counts one key's recent hits before it is leased (a
// space-saving counter: another key's hit decrements it, and takes the
// slot once it reaches zero), so that a hot key keeps its slot against a
// flood of distinct keys that hash to it.
type candidate struct {
	hash  uint64
	count int64
	since time.Time
}

type shard struct {
	mu      sync.Mutex
	entries map[string]*entry
	max     int
	cand    [candidates]candidate
}

type table struct {
	seed   maphash.Seed
	shards [shards]shard
}

func newTable(maxKeys int) *table {
	t := &table{seed: maphash.MakeSeed()}
	per := max((maxKeys+shards-1)/shards, 1)
	for i := range t.shards {
		t.shards[i].entries = make(map[string]*entry)
		t.shards[i].max = per
	}
	return t
}

// shard returns the shard of key and key's hash.
func (t *table) shard(key string) (*shard, uint64) {
	h := maphash.String(t.seed, key)
	return &t.shards[h%shards], h
}

// hot counts a hit of the key with hash h at now and reports whether the key
// has had hotAfter hits within one period (sh.mu held).
func (sh *shard) hot(h uint64, now time.Time, period time.Duration, hotAfter int64) bool {
	c := &sh.cand[(h/shards)%candidates]
	switch {
	case c.hash == h && now.Sub(c.since) < period:
		c.count++
	case c.hash == h || c.count <= 1 || now.Sub(c.since) >= period:
		*c = candidate{hash: h, count: 1, since: now}
	default:
		c.count--
		return false
	}
	return c.count >= hotAfter
}

// insert adds an entry for key (sh.mu held), evicting the least recently
// used of a few sampled entries with no block take in flight when the shard
// is full; it returns nil when none can go. It returns the evicted entry
// and its key, if any.
func (sh *shard) insert(key string, now time.Time) (e *entry, victim string, evicted *entry) {
	if len(sh.entries) >= sh.max {
		var oldest *entry
		n := 0
		for k, c := range sh.entries {
			if c.wait == nil && (oldest == nil || c.lastUsed.Before(oldest.lastUsed)) {
				victim, oldest = k, c
			}
			if n++; n == evictSample {
				break
			}
		}
		if oldest == nil {
			return nil, "", nil
		}
		delete(sh.entries, victim)
		evicted = oldest
	}
	e = &entry{lastUsed: now}
	sh.entries[strings.Clone(key)] = e
	return e, victim, evicted
}
