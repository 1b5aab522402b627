package wire

import "github.com/redis/go-redis/v9"

// RedisClient returns the client of the chain's first Redis backend, nil
// when there is none, for other users of the same Redis (traffic insight);
// the Backends own it: callers must not close it.
func (bs *Backends) RedisClient() redis.UniversalClient {
	if len(bs.redis) == 0 {
		return nil
	}
	return bs.redis[0].store.Client()
}
