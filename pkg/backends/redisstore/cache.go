package redisstore

import (
	"hash/maphash"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// overCache remembers keys that Redis reported over their limit, until the
// time a single hit would fit again, like envoyproxy/ratelimit's local
// cache. It is a fixed number of mutex-guarded map shards, each bounded; no
// lock is shared by all requests.
//
// A cached answer is what Redis would say for a one-hit request: refused,
// Remaining 0, RetryAfter until the key admits one hit, ResetAfter as last
// reported. A fixed window counts refused hits, so the requests answered
// locally are not counted there; that changes no decision (the window was
// already over its limit until its end). Requests of more than one hit get
// the one-hit RetryAfter, a lower bound of theirs. Reads (hits == 0) always
// go to Redis.
type overCache struct {
	seed     maphash.Seed
	perShard int
	shards   [cacheShards]cacheShard
}

const cacheShards = 32

type cacheShard struct {
	mu sync.Mutex
	m  map[string]cacheEntry
	_  [40]byte // keep shards on separate cache lines
}

type cacheEntry struct {
	limit limiter.Limit // the limit the key was refused under
	until int64         // Unix ns: refused until then
	reset int64         // Unix ns: end of ResetAfter
}

func newOverCache(size int) *overCache {
	c := &overCache{seed: maphash.MakeSeed(), perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

func (c *overCache) shard(k string) *cacheShard {
	return &c.shards[maphash.String(c.seed, k)%cacheShards]
}

// get writes the cached refusal of r into res and reports whether there was
// one for r's key and limit at now.
func (c *overCache) get(r *limiter.Request, now time.Time, res *limiter.Result) bool {
	if r.Hits == 0 {
		return false
	}
	sh := c.shard(r.Key)
	ns := now.UnixNano()
	sh.mu.Lock()
	e, ok := sh.m[r.Key]
	if ok && ns >= e.until {
		delete(sh.m, r.Key)
		ok = false
	}
	sh.mu.Unlock()
	if !ok || e.limit != r.Limit {
		return false
	}
	*res = limiter.Result{
		Limit:      r.Limit.Capacity(),
		RetryAfter: time.Duration(e.until - ns),
		ResetAfter: time.Duration(max(e.reset, e.until) - ns),
	}
	return true
}

// put records that r's key refuses one hit for over from now.
func (c *overCache) put(r *limiter.Request, now time.Time, over, reset time.Duration) {
	ns := now.UnixNano()
	e := cacheEntry{limit: r.Limit, until: ns + int64(over), reset: ns + int64(reset)}
	sh := c.shard(r.Key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[r.Key]; !ok && len(sh.m) >= c.perShard {
		c.evict(sh, ns)
	}
	// Clone even when the key exists: assigning to a string-keyed map
	// stores the new key string, and r.Key may alias a reused buffer.
	sh.m[strings.Clone(r.Key)] = e
}

// evict makes room in a full shard: it drops expired entries among the first
// few it visits, or else one arbitrary entry (map order is random).
func (c *overCache) evict(sh *cacheShard, ns int64) {
	const visits = 8
	n := 0
	var victim string
	for k, e := range sh.m {
		if e.until <= ns {
			delete(sh.m, k)
		} else if victim == "" {
			victim = k
		}
		if n++; n == visits {
			break
		}
	}
	if len(sh.m) >= c.perShard && victim != "" {
		delete(sh.m, victim)
	}
}

// len returns the number of entries (tests).
func (c *overCache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}
