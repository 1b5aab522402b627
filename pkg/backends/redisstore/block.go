package redisstore

import (
	"context"
	_ "embed"
	"encoding/binary"
	"fmt"
	"math"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Blocks: hits counted at once, for a replica to admit later on its own
// (pkg/lease), and given back when it no longer needs them.
var (
	//go:embed return.lua
	returnLua    string
	returnSource = luaSource(libLua, returnLua)
	returnScript = redis.NewScript(returnSource)
)

// TakeBlock counts r.Hits hits of r's key at once, or none, as Take of r
// alone in CountIfAllAllowed mode does (the local cache aside), and
// returns the block's mark for ReturnBlock: the window the hits were
// counted in, or for the token bucket when Redis counted them (Unix
// microseconds on its clock). The mark is 0 when the block was refused.
func (s *Store) TakeBlock(ctx context.Context, r limiter.Request, res *limiter.Result) (int64, error) {
	if err := check([]limiter.Request{r}, []limiter.Result{{}}); err != nil {
		return 0, fmt.Errorf("redisstore: take a block: %w", err) // an unknown algorithm too
	}
	var now time.Time
	if s.opts.Now != nil {
		now = s.opts.Now()
	}
	var mark int64
	start := time.Now()
	if err := s.called(start, 1, s.takeOne(ctx, limiter.CountIfAllAllowed, &r, res, now, &mark)); err != nil {
		return 0, err
	}
	return mark, nil
}

// ReturnBlock gives back the hits of a block (r.Hits of r's key, taken by
// TakeBlock with mark) that the caller did not admit: r.Hits − used, as far
// as Redis still counts them against the same limit (return.lua: the
// block's window, or, for the token bucket, the tokens not yet decayed on
// Redis's clock). It returns how many went back. It is sent at most once:
// a return whose reply is lost is not repeated, since running it twice
// would give the hits back twice.
func (s *Store) ReturnBlock(ctx context.Context, r limiter.Request, mark, used int64) (int64, error) {
	l := r.Limit
	if err := checkBounds([]limiter.Request{r}); err != nil {
		return 0, fmt.Errorf("redisstore: return a block: %w", err)
	}
	if int(l.Algorithm) >= len(oneScripts) || l.Requests <= 0 || used < 0 || used > r.Hits || mark < 0 {
		return 0, fmt.Errorf("redisstore: return a block: %w: %v, %d of %d hits used, mark %d", limiter.ErrInvalidRequest, l, used, r.Hits, mark)
	}
	flags, us, sub := int64(0), int64(0), int64(0)
	if s.opts.Now != nil {
		us, sub = splitNanos(s.opts.Now())
	} else {
		flags = 2 // the script reads Redis's TIME
	}
	emit := int64(0)
	if l.Algorithm == limiter.TokenBucket {
		emit = int64(l.Emission())
	}
	b := make([]byte, 0, 72)
	for _, v := range [...]int64{flags, us, sub, int64(l.Algorithm), mark, r.Hits, used, int64(l.Period), emit} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(v)))
	}
	keys := []string{Key(s.prefix, r.Key)}
	start := time.Now()
	cmd := s.send(ctx, scriptCmd(ctx, "evalsha", returnScript.Hash(), keys, string(b)))
	if isNoScript(cmd.Err()) {
		s.scriptLoaded()
		cmd = s.send(ctx, scriptCmd(ctx, "eval", returnSource, keys, string(b)))
	}
	n, err := cmd.Int64()
	if s.opts.OnCall != nil {
		s.opts.OnCall(time.Since(start), err)
	}
	if err != nil {
		return 0, fmt.Errorf("redisstore: return a block: %w", err)
	}
	if n < 0 || n > r.Hits-used {
		return 0, fmt.Errorf("redisstore: return a block: %w: %d hits given back of %d", ErrBadReply, n, r.Hits-used)
	}
	return n, nil
}
