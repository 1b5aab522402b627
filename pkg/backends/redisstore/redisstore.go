// Package redisstore is the Redis limiter.Store: every algorithm of
// pkg/limiter runs in one atomic Lua script (take.lua, or for a call of one
// request its algorithm's lean script, take_fixed.lua), so all extauthz
// replicas that share a Redis (standalone, Sentinel or Cluster) share exact
// counts.
//
// One Take is one round trip: a single EVALSHA carrying every key of the
// call, or, in Cluster mode, one EVALSHA per hash slot sent as one pipeline
// per node, all nodes concurrently. See README.md for the key layout, the
// exactness bounds of the Lua arithmetic and the Cluster caveats.
package redisstore

import (
	"context"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/backends/redisstore/internal/pipe"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// The scripts' Lua. lib.lua (divmod, muldiv, window) is written once and
// prepended to the scripts that use it; take_fixed.lua and take_bucket.lua
// keep their arithmetic inline (lib.lua says why).
var (
	//go:embed lib.lua
	libLua string
	//go:embed take.lua
	takeLua string
	//go:embed undo.lua
	undoLua string
	// One-request scripts, one per algorithm (take_fixed.lua): the same
	// results as take.lua's for a call of one request, at about half its
	// cost in Redis.
	//go:embed take_fixed.lua
	takeFixedLua string
	//go:embed take_sliding.lua
	takeSlidingLua string
	//go:embed take_bucket.lua
	takeBucketLua string
	// one.lua starts the one-request scripts (their clock) and each.lua
	// ends them: it runs their take once per key, so that the pipeline can
	// merge a batch's calls into one.
	//go:embed one.lua
	oneLua string
	//go:embed each.lua
	eachLua string
)

// luaSource joins Lua fragments into one script, each on its own lines.
func luaSource(fragments ...string) string {
	return strings.Join(fragments, "\n")
}

// The scripts' sources, as sent by EVAL.
var (
	takeSource = luaSource(libLua, takeLua)
	undoSource = luaSource(libLua, undoLua)
	// oneSources[a] is the source of oneScripts[a].
	oneSources = [...]string{
		limiter.FixedWindow:   luaSource(oneLua, takeFixedLua, eachLua),
		limiter.SlidingWindow: luaSource(libLua, oneLua, takeSlidingLua, eachLua),
		limiter.TokenBucket:   luaSource(oneLua, takeBucketLua, eachLua),
	}
)

// The scripts are loaded once per server and called by SHA.
var (
	takeScript = redis.NewScript(takeSource)
	undoScript = redis.NewScript(undoSource)
	// oneScripts[a] serves a call of one request of algorithm a.
	oneScripts = [...]*redis.Script{
		limiter.FixedWindow:   redis.NewScript(oneSources[limiter.FixedWindow]),
		limiter.SlidingWindow: redis.NewScript(oneSources[limiter.SlidingWindow]),
		limiter.TokenBucket:   redis.NewScript(oneSources[limiter.TokenBucket]),
	}
	// oneMerged[a] lets the pipeline merge the calls of oneScripts[a] of a
	// batch into one (each.lua).
	oneMerged = [...]pipe.Script{
		limiter.FixedWindow:   {SHA: oneScripts[limiter.FixedWindow].Hash(), Width: 8 * replyWidth},
		limiter.SlidingWindow: {SHA: oneScripts[limiter.SlidingWindow].Hash(), Width: 8 * replyWidth},
		limiter.TokenBucket:   {SHA: oneScripts[limiter.TokenBucket].Hash(), Width: 8 * replyWidth},
	}
)

// DefaultPrefix starts every key when Options.Prefix is empty.
const DefaultPrefix = "extauthz:"

// maxExact is one more than the largest count, burst or hit number the Lua
// arithmetic (IEEE doubles) represents exactly: limiter.MaxCount, the bound
// every configured limit keeps (Limit.ValidateConfig).
const maxExact = limiter.MaxCount + 1

// Script modes (ARGV mode of take.lua).
const (
	modeCountAll          = 0
	modeCountIfAllAllowed = 1
	modeEvalOnly          = 2
)

// replyWidth is the number of integers take.lua returns per key.
const replyWidth = 5

// ErrBadReply is wrapped by Take when Redis answers something take.lua never
// returns: a reply of the wrong type, length or range.
var ErrBadReply = errors.New("unexpected reply from redis")

// Options configures a Store. Zero values are the documented defaults.
type Options struct {
	// Prefix starts every key (default DefaultPrefix, "extauthz:"). It must
	// not contain '{' or '}', which would change the key's hash slot. Open
	// sets it, and LocalCacheSize, from its Config.
	Prefix string
	// LocalCacheSize bounds the local over-limit cache in keys; 0 (the
	// default) disables it. With the cache on, once Redis says a key refuses
	// even a single hit until time T, requests for that key are refused
	// locally, without a round trip, until T.
	LocalCacheSize int

	// Now, when set, is the time every decision uses, sent to Redis instead
	// of letting the script read the server's TIME. Only tests set it: in
	// production the server clock makes every replica agree however skewed
	// their own clocks are. The local cache uses Now (default time.Now).
	Now func() time.Time
	// ExtraTTL is added to every key's TTL (default 0: a key expires exactly
	// when its state is no longer needed, rounded up to a millisecond). Tests
	// that drive a fake Now set it so that keys outlive the fake clock's drift
	// from the real one.
	ExtraTTL time.Duration

	// OnCall, when set, is called after every round trip to Redis with its
	// duration and error (nil on success). Calls answered entirely by the
	// local cache do not call it. It runs on the request path: keep it cheap.
	OnCall func(d time.Duration, err error)
	// OnScriptLoad, when set, is called each time a server answered
	// NOSCRIPT (after SCRIPT FLUSH, a restart or a failover to a server that
	// never saw the script) and the script was sent again in full.
	OnScriptLoad func()
	// OnCacheHit, when set, is called with the number of requests of a Take
	// answered by the local over-limit cache (never with 0).
	OnCacheHit func(n int)
}

// Store is a limiter.Store backed by Redis. It is safe for concurrent use.
type Store struct {
	client  redis.UniversalClient
	cluster *redis.ClusterClient // non-nil in Cluster mode
	prefix  string
	opts    Options
	cache   *overCache // nil when the local cache is off
	addr    string     // for String and Addr
	// pipe, when set, carries Take's script calls (Config.AutoPipeline);
	// the other commands (Ping, LoadScript) use client.
	pipe *pipe.Client
	// bound is BoundCalls's bound in nanoseconds (0: none).
	bound atomic.Int64
}

var _ limiter.Store = (*Store)(nil)

// New returns a Store that runs its script on client, a *redis.Client
// (standalone or Sentinel failover client) or a *redis.ClusterClient. The
// Store owns client: Close closes it. New does not contact Redis.
func New(client redis.UniversalClient, opts Options) (*Store, error) {
	if client == nil {
		return nil, errors.New("redisstore: nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if err := checkPrefix(opts.Prefix); err != nil {
		return nil, fmt.Errorf("redisstore: prefix %w", err)
	}
	if opts.LocalCacheSize < 0 {
		return nil, fmt.Errorf("redisstore: local cache size %d is negative", opts.LocalCacheSize)
	}
	if opts.ExtraTTL < 0 {
		return nil, fmt.Errorf("redisstore: extra TTL %v is negative", opts.ExtraTTL)
	}
	s := &Store{client: client, prefix: opts.Prefix, opts: opts}
	if cc, ok := client.(*redis.ClusterClient); ok {
		s.cluster = cc
		s.addr = "cluster"
	}
	if opts.LocalCacheSize > 0 {
		s.cache = newOverCache(opts.LocalCacheSize)
	}
	return s, nil
}

// String describes the store for logs, e.g. "redis 127.0.0.1:6379/0",
// "redis sentinel mymaster@10.0.0.1:26379/0" or "redis cluster
// 10.0.0.1:6379,10.0.0.2:6379" (plus " (tls)") when opened with Open. It
// never includes credentials.
func (s *Store) String() string {
	if s.addr == "" {
		return "redis"
	}
	return "redis " + s.addr
}

// Addr is String without the leading "redis ", for the health table.
func (s *Store) Addr() string { return s.addr }

// Client returns the Redis client the Store owns, for other users of the
// same Redis (traffic insight); they must not close it.
func (s *Store) Client() redis.UniversalClient { return s.client }

// Close closes the Redis client and the pipeline.
func (s *Store) Close() error {
	var err error
	if s.pipe != nil {
		err = s.pipe.Close()
	}
	err = errors.Join(err, s.client.Close())
	if err != nil {
		return fmt.Errorf("redisstore: close: %w", err)
	}
	return nil
}

// Ping checks that Redis answers: PING on the server, or on every master in
// Cluster mode. It is the cheap health probe of the failover chain.
func (s *Store) Ping(ctx context.Context) error {
	var err error
	if s.cluster != nil {
		err = s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return c.Ping(ctx).Err()
		})
	} else {
		err = s.client.Ping(ctx).Err()
	}
	if err != nil {
		return fmt.Errorf("redisstore: ping: %w", err)
	}
	return nil
}

// LoadScript loads the scripts on the server (every master in Cluster
// mode), so that the first Take needs no reload. Take works without it.
func (s *Store) LoadScript(ctx context.Context) error {
	for _, sc := range append([]*redis.Script{takeScript}, oneScripts[:]...) {
		if err := sc.Load(ctx, s.client).Err(); err != nil {
			return fmt.Errorf("redisstore: load script: %w", err)
		}
	}
	return nil
}

// Take implements limiter.Store. It validates reqs (limiter.CheckRequests,
// plus the bounds of the Lua arithmetic: periods of at least a microsecond,
// counts below 2^53), answers what it can from the local over-limit cache,
// and sends the rest to Redis in one round trip.
//
// In Cluster mode, keys on different hash slots cannot be updated
// atomically together: see runCluster for how CountIfAllAllowed is kept
// (exactly without concurrent calls on the same keys, on the strict side
// with them, at the cost of a second round trip when one slot refused while
// another counted).
func (s *Store) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	if err := check(reqs, res); err != nil {
		return fmt.Errorf("redisstore: take %d keys: %w", len(reqs), err)
	}
	if len(reqs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("redisstore: take %d keys: %w", len(reqs), err)
	}
	var now time.Time
	if s.opts.Now != nil {
		now = s.opts.Now()
	} else if s.cache != nil {
		now = time.Now()
	}

	if s.cache == nil && len(reqs) == 1 && int(reqs[0].Limit.Algorithm) < len(oneScripts) {
		start := time.Now()
		return s.called(start, 1, s.takeOne(ctx, mode, &reqs[0], &res[0], now, nil))
	}

	scriptMode := modeCountAll
	if mode == limiter.CountIfAllAllowed {
		scriptMode = modeCountIfAllAllowed
	}
	var c call
	c.init(len(reqs))
	if s.cache != nil {
		hits, vetoed := 0, false
		for i := range reqs {
			if s.cache.get(&reqs[i], now, &res[i]) {
				c.cached[i] = true
				hits++
				vetoed = vetoed || !reqs[i].Shadow
			}
		}
		if hits > 0 {
			if s.opts.OnCacheHit != nil {
				s.opts.OnCacheHit(hits)
			}
			if hits == len(reqs) {
				return nil
			}
			if scriptMode == modeCountIfAllAllowed && vetoed {
				// A refused request that is not Shadow means the call counts
				// nothing: the others are only evaluated.
				scriptMode = modeEvalOnly
			}
		}
	}
	c.build(s.prefix, reqs, s.cluster != nil)

	start := time.Now()
	var err error
	if s.cluster == nil || c.singleSlot() {
		err = s.runOne(ctx, &c, reqs, res, scriptMode, now, 0, len(c.idx))
	} else {
		err = s.runCluster(ctx, &c, reqs, res, scriptMode, now)
	}
	return s.called(start, len(reqs), err)
}

// called reports a round trip of a Take of n requests that started at
// start to Options.OnCall, and wraps its error.
func (s *Store) called(start time.Time, n int, err error) error {
	if s.opts.OnCall != nil {
		s.opts.OnCall(time.Since(start), err)
	}
	if err != nil {
		return fmt.Errorf("redisstore: take %d keys: %w", n, err)
	}
	return nil
}

// check validates a call as every Take does: limiter.CheckRequests, then
// checkBounds.
func check(reqs []limiter.Request, res []limiter.Result) error {
	if err := limiter.CheckRequests(reqs, res); err != nil {
		return err
	}
	return checkBounds(reqs)
}

// checkBounds rejects limits the Lua arithmetic cannot represent exactly.
func checkBounds(reqs []limiter.Request) error {
	for i := range reqs {
		r := &reqs[i]
		l := r.Limit
		switch {
		case l.Period < time.Microsecond:
			return fmt.Errorf("%w: request %d: period %v is shorter than the Redis store's 1µs", limiter.ErrInvalidLimit, i, l.Period)
		case l.Requests >= maxExact || l.Burst >= maxExact:
			return fmt.Errorf("%w: request %d: limit %v is beyond the Redis store's 2^53", limiter.ErrInvalidLimit, i, l)
		case r.Hits >= maxExact:
			return fmt.Errorf("%w: request %d: hits %d is beyond the Redis store's 2^53", limiter.ErrInvalidRequest, i, r.Hits)
		}
	}
	return nil
}

// runOne sends the requests c.idx[lo:hi] (all on one slot, or any keys
// outside Cluster mode) as one EVALSHA of take.lua, and EVAL if the script
// is missing.
func (s *Store) runOne(ctx context.Context, c *call, reqs []limiter.Request, res []limiter.Result, mode int, now time.Time, lo, hi int) error {
	keys, args := c.keys[lo:hi], c.args(reqs, lo, hi, mode, false, now, s.opts)
	if s.pipe != nil {
		return s.pipeEval(ctx, takeScript.Hash(), nil, takeSource, keys, args, func(packed string) error {
			_, err := s.decodePacked(packed, c, reqs, res, lo, hi, now)
			return err
		})
	}
	cmd := s.send(ctx, scriptCmd(ctx, "evalsha", takeScript.Hash(), keys, args))
	if isNoScript(cmd.Err()) {
		s.scriptLoaded()
		cmd = s.send(ctx, scriptCmd(ctx, "eval", takeSource, keys, args))
	}
	_, err := s.decode(cmd, c, reqs, res, lo, hi, now, false)
	return err
}

// send runs a script call (EVALSHA or EVAL) once (see once); the outcome
// is cmd's.
func (s *Store) send(ctx context.Context, cmd *redis.Cmd) *redis.Cmd {
	_ = s.client.Process(ctx, once{cmd})
	return cmd
}

// scriptCmd builds "verb body numkeys keys... args..." (EVAL or EVALSHA).
func scriptCmd(ctx context.Context, verb, body string, keys []string, args ...interface{}) *redis.Cmd {
	a := make([]interface{}, 0, 3+len(keys)+len(args))
	a = append(a, verb, body, len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	return redis.NewCmd(ctx, append(a, args...)...)
}

// once marks a script call that go-redis must never send a second time.
// When its reply is lost (EOF, a timeout) the script may have run, and
// running it again would count its hits twice (undo.lua: take them back
// twice); the caller gets the error and its failure policy decides. Without
// it the cluster client retries such errors up to MaxRedirects times, and
// MaxRetries: -1 does not stop it. MOVED and ASK replies, which mean the
// script did not run, are still followed, and a command that never reached
// the wire may still be sent on another connection.
type once struct{ *redis.Cmd }

// NoRetry implements redis.Cmder's retry policy: never.
func (once) NoRetry() bool { return true }

// pipeScript queues a script call on pipe that is never sent twice (once).
func pipeScript(ctx context.Context, pipe redis.Pipeliner, verb, body string, keys []string, args ...interface{}) *redis.Cmd {
	cmd := scriptCmd(ctx, verb, body, keys, args...)
	_ = pipe.Process(ctx, once{cmd}) // queued: the error is cmd's, after Exec
	return cmd
}

// runCluster sends one EVALSHA per hash slot in one pipeline, which go-redis
// splits into one pipeline per node, run concurrently. Slots whose node
// lost the script are sent again with EVAL, in one more pipeline.
//
// Keys on different slots cannot be updated atomically together. In
// CountIfAllAllowed mode each slot's script counts all or nothing; when some
// slot refused while others counted, a second round trip (undo.lua) puts
// the counted slots' keys back as they were, unless a concurrent call has
// changed them since (then those hits stay counted: the error is on the
// strict side). Without concurrent writers to the same keys the outcome is
// exactly limiter.ApplyAll's.
func (s *Store) runCluster(ctx context.Context, c *call, reqs []limiter.Request, res []limiter.Result, mode int, now time.Time) error {
	groups := c.groups()
	wantUndo := mode == modeCountIfAllAllowed
	cmds := make([]*redis.Cmd, len(groups))
	args := make([]string, len(groups))
	pipe := s.cluster.Pipeline()
	for g, gr := range groups {
		args[g] = c.args(reqs, gr.lo, gr.hi, mode, wantUndo, now, s.opts)
		cmds[g] = pipeScript(ctx, pipe, "evalsha", takeScript.Hash(), c.keys[gr.lo:gr.hi], args[g])
	}
	_, _ = pipe.Exec(ctx) // errors are per command, checked below
	var retry redis.Pipeliner
	for g, gr := range groups {
		if isNoScript(cmds[g].Err()) {
			if retry == nil {
				retry = s.cluster.Pipeline()
				s.scriptLoaded()
			}
			cmds[g] = pipeScript(ctx, retry, "eval", takeSource, c.keys[gr.lo:gr.hi], args[g])
		}
	}
	if retry != nil {
		_, _ = retry.Exec(ctx)
	}
	var errs []error
	outcomes := make([]outcome, len(groups))
	all := true
	for g, gr := range groups {
		o, err := s.decode(cmds[g], c, reqs, res, gr.lo, gr.hi, now, wantUndo)
		if err != nil {
			errs = append(errs, err)
		}
		outcomes[g] = o
		all = all && o.allowed
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if !wantUndo || all {
		return nil
	}
	return s.undo(ctx, c, reqs, res, groups, outcomes)
}

// undo takes back the hits of the slots that counted in a CountIfAllAllowed
// call that another slot refused (undo.lua), and makes their results
// describe the state without them (limiter.ApplyAll: Remaining and
// ResetAfter of a read).
func (s *Store) undo(ctx context.Context, c *call, reqs []limiter.Request, res []limiter.Result, groups []group, outcomes []outcome) error {
	pipe := s.cluster.Pipeline()
	var cmds []*redis.Cmd
	var keys [][]string
	var args [][]interface{}
	for g, o := range outcomes {
		if !o.allowed || len(o.writes) == 0 {
			continue
		}
		ks := make([]string, len(o.writes))
		as := make([]interface{}, 0, 4*len(o.writes))
		for i, w := range o.writes {
			ks[i] = c.keys[w.k]
			first := &reqs[c.idx[w.k]]
			hits := int64(0)
			for k := groups[g].lo; k < groups[g].hi; k++ {
				if reqs[c.idx[k]].Key == first.Key {
					hits += reqs[c.idx[k]].Hits
				}
			}
			l := first.Limit
			t := int64(0)
			if l.Algorithm == limiter.TokenBucket && l.Requests > 0 {
				t = int64(l.Emission())
			}
			as = append(as, int64(l.Algorithm), w.value, hits, t)
		}
		keys, args = append(keys, ks), append(args, as)
		cmds = append(cmds, pipeScript(ctx, pipe, "evalsha", undoScript.Hash(), ks, as...))
		for _, r := range o.reads {
			res[r.i].Remaining, res[r.i].ResetAfter = r.remaining, r.reset
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	_, _ = pipe.Exec(ctx)
	var retry redis.Pipeliner
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			if retry == nil {
				retry = s.cluster.Pipeline()
				s.scriptLoaded()
			}
			cmds[i] = pipeScript(ctx, retry, "eval", undoSource, keys[i], args[i]...)
		}
	}
	if retry != nil {
		_, _ = retry.Exec(ctx)
	}
	var errs []error
	for _, cmd := range cmds {
		if _, err := cmd.Int64(); err != nil {
			errs = append(errs, fmt.Errorf("undo: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *Store) scriptLoaded() {
	if s.opts.OnScriptLoad != nil {
		s.opts.OnScriptLoad()
	}
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}

// outcome is what decode learnt from one script call beyond the results.
type outcome struct {
	allowed bool // every request of the call was admitted
	// With want_undo: the results of reads of the state before the call,
	// and the keys the script wrote.
	reads  []readResult
	writes []write
}

type readResult struct {
	i         int // index into reqs
	remaining int64
	reset     time.Duration
}

// write is a key that the script wrote: c.keys[k], set to value.
type write struct {
	k     int
	value string
}

// decode checks the reply of one script call for requests c.idx[lo:hi] and
// writes their results (and feeds the local cache).
func (s *Store) decode(cmd *redis.Cmd, c *call, reqs []limiter.Request, res []limiter.Result, lo, hi int, now time.Time, wantUndo bool) (outcome, error) {
	if !wantUndo {
		packed, err := packedReply(cmd)
		if err != nil {
			return outcome{}, err
		}
		return s.decodePacked(packed, c, reqs, res, lo, hi, now)
	}
	v, err := cmd.Result()
	if err != nil {
		return outcome{}, err
	}
	vals, ok := v.([]interface{})
	if !ok || len(vals) < 1 || len(vals)%2 != 1 {
		return outcome{}, fmt.Errorf("%w: got %T of length %d, want an array of a string and 2 values per key written", ErrBadReply, v, len(vals))
	}
	packed, ok := vals[0].(string)
	if !ok {
		return outcome{}, fmt.Errorf("%w: got %T, want a string", ErrBadReply, vals[0])
	}
	n := hi - lo
	if len(packed) != 8*(replyWidth+2)*n {
		return outcome{}, fmt.Errorf("%w: got %d bytes, want %d (%d numbers)", ErrBadReply, len(packed), 8*(replyWidth+2)*n, (replyWidth+2)*n)
	}
	o, err := s.decodeResults(packed, c, reqs, res, lo, hi, now)
	if err != nil {
		return o, err
	}
	err = o.decodeUndo(packed, vals[1:], c, lo, hi)
	return o, err
}

// decodePacked checks the packed reply of a script call for requests
// c.idx[lo:hi] without want_undo and writes their results.
func (s *Store) decodePacked(packed string, c *call, reqs []limiter.Request, res []limiter.Result, lo, hi int, now time.Time) (outcome, error) {
	want := replyWidth * (hi - lo)
	if len(packed) != 8*want {
		return outcome{}, fmt.Errorf("%w: got %d bytes, want %d (%d numbers)", ErrBadReply, len(packed), 8*want, want)
	}
	return s.decodeResults(packed, c, reqs, res, lo, hi, now)
}

// decodeResults writes the results of requests c.idx[lo:hi] from a packed
// reply of the right length (and feeds the local cache).
func (s *Store) decodeResults(packed string, c *call, reqs []limiter.Request, res []limiter.Result, lo, hi int, now time.Time) (outcome, error) {
	o := outcome{allowed: true}
	for k := lo; k < hi; k++ {
		i := c.idx[k]
		over, err := decodeResult(packed, k-lo, &reqs[i], &res[i])
		if err != nil {
			return o, err
		}
		o.allowed = o.allowed && (res[i].Allowed || reqs[i].Shadow)
		if s.cache != nil && over > 0 {
			s.cache.put(&reqs[i], now, over, res[i].ResetAfter)
		}
	}
	return o, nil
}

// decodeResult writes the result of request r from the k-th group of
// replyWidth numbers of a packed reply, and returns its over_ns (how long a
// one-hit request stays refused, when the script computed it).
func decodeResult(packed string, k int, r *limiter.Request, res *limiter.Result) (time.Duration, error) {
	var x [replyWidth]int64
	for j := range x {
		n, err := replyNumber(packed, replyWidth*k+j)
		if err != nil {
			return 0, err
		}
		x[j] = n
	}
	if x[0] > 1 {
		return 0, fmt.Errorf("%w: allowed flag %d, want 0 or 1", ErrBadReply, x[0])
	}
	*res = limiter.Result{
		Allowed:    x[0] == 1,
		Limit:      r.Limit.Capacity(),
		Remaining:  x[1],
		ResetAfter: time.Duration(x[2]),
		RetryAfter: time.Duration(x[3]),
	}
	return time.Duration(x[4]), nil
}

// decodeUndo decodes the want_undo part of the reply for requests
// c.idx[lo:hi]: the reads of the state before the call (packed after the
// results) and the keys the script wrote (rest).
func (o *outcome) decodeUndo(packed string, rest []interface{}, c *call, lo, hi int) error {
	n := hi - lo
	base := replyWidth * n
	o.reads = make([]readResult, n)
	for k := range n {
		remaining, err := replyNumber(packed, base+2*k)
		if err != nil {
			return err
		}
		reset, err := replyNumber(packed, base+2*k+1)
		if err != nil {
			return err
		}
		o.reads[k] = readResult{i: c.idx[lo+k], remaining: remaining, reset: time.Duration(reset)}
	}
	for j := 0; j < len(rest); j += 2 {
		idx, ok1 := rest[j].(int64)
		value, ok2 := rest[j+1].(string)
		if !ok1 || !ok2 || idx < 1 || idx > int64(n) {
			return fmt.Errorf("%w: bad written-key entry %v", ErrBadReply, rest[j:j+2])
		}
		o.writes = append(o.writes, write{k: lo + int(idx) - 1, value: value})
	}
	return nil
}

// replyNumber returns the j-th little-endian double of a packed reply as a
// non-negative int64, saturated at math.MaxInt64 as pkg/limiter's
// arithmetic is.
func replyNumber(packed string, j int) (int64, error) {
	f := math.Float64frombits(binary.LittleEndian.Uint64(unsafe.Slice(unsafe.StringData(packed[8*j:]), 8)))
	switch {
	case !(f >= 0) || f != math.Trunc(f): // NaN, negative, fractional, -Inf
		return 0, fmt.Errorf("%w: number %d is %v, want a non-negative integer", ErrBadReply, j, f)
	case f >= math.MaxInt64:
		return math.MaxInt64, nil
	}
	return int64(f), nil
}

// call is the per-Take scratch: the requests sent to Redis (not answered by
// the cache), their full keys and, in Cluster mode, their slots.
type call struct {
	cached []bool   // cached[i]: reqs[i] was answered locally
	idx    []int    // indexes into reqs of the requests sent, grouped by slot
	keys   []string // keys[k] is the Redis key of reqs[idx[k]]
	slots  []uint16 // slots[k] is the hash slot of keys[k] (Cluster mode)

	// Room for the common case of a few descriptors, so that the slices
	// above need no allocation.
	cachedBuf [smallCall]bool
	idxBuf    [smallCall]int
	endsBuf   [smallCall]int
}

// smallCall is how many requests a Take handles in its scratch arrays.
const smallCall = 8

func (c *call) init(n int) {
	if n <= smallCall {
		c.cached, c.idx = c.cachedBuf[:n], c.idxBuf[:0]
		return
	}
	c.cached, c.idx = make([]bool, n), make([]int, 0, n)
}

// build computes the keys (and slots) of the requests not cached, ordering
// them by slot in Cluster mode so that each slot is a contiguous range.
func (c *call) build(prefix string, reqs []limiter.Request, cluster bool) {
	size := 0
	for i := range reqs {
		if !c.cached[i] {
			c.idx = append(c.idx, i)
			size += keyLen(prefix, reqs[i].Key)
		}
	}
	buf := make([]byte, 0, size)
	ends := c.endsBuf[:0]
	for _, i := range c.idx {
		buf = appendKey(buf, prefix, reqs[i].Key)
		ends = append(ends, len(buf))
	}
	// buf is never written again: a string over it saves a copy of every
	// key (BenchmarkTake: one allocation per call).
	all := unsafe.String(unsafe.SliceData(buf), len(buf))
	c.keys = make([]string, len(c.idx))
	start := 0
	for k := range c.idx {
		c.keys[k] = all[start:ends[k]]
		start = ends[k]
	}
	if !cluster {
		return
	}
	c.slots = make([]uint16, len(c.idx))
	for k, i := range c.idx {
		c.slots[k] = Slot(reqs[i].Key)
	}
	// Insertion sort by slot: calls carry a handful of keys, and a stable
	// order keeps each slot's requests in call order, which duplicates of a
	// key rely on.
	for k := 1; k < len(c.idx); k++ {
		for j := k; j > 0 && c.slots[j-1] > c.slots[j]; j-- {
			c.slots[j-1], c.slots[j] = c.slots[j], c.slots[j-1]
			c.idx[j-1], c.idx[j] = c.idx[j], c.idx[j-1]
			c.keys[j-1], c.keys[j] = c.keys[j], c.keys[j-1]
		}
	}
}

func (c *call) singleSlot() bool {
	for k := 1; k < len(c.slots); k++ {
		if c.slots[k] != c.slots[0] {
			return false
		}
	}
	return true
}

type group struct{ lo, hi int }

// groups returns the ranges of c.idx that share a slot.
func (c *call) groups() []group {
	var gs []group
	lo := 0
	for k := 1; k <= len(c.slots); k++ {
		if k == len(c.slots) || c.slots[k] != c.slots[lo] {
			gs = append(gs, group{lo, k})
			lo = k
		}
	}
	return gs
}

// args encodes ARGV[1] of take.lua for requests c.idx[lo:hi]: little-endian
// doubles (every value is an integer below 2^53, checkBounds), which the
// script unpacks with struct.unpack (cheaper there than parsing text).
func (c *call) args(reqs []limiter.Request, lo, hi, mode int, wantUndo bool, now time.Time, opts Options) string {
	b := make([]byte, 0, 8*(4+5*(hi-lo)))
	flags := int64(mode) | 4*boolInt(opts.LocalCacheSize > 0) | 8*boolInt(wantUndo)
	us, sub := int64(0), int64(0)
	if opts.Now != nil {
		us, sub = splitNanos(now)
	} else {
		flags |= 16 // the script reads Redis's TIME
	}
	for _, v := range [...]int64{flags, us, sub, extraMillis(opts)} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(v)))
	}
	for _, i := range c.idx[lo:hi] {
		r := &reqs[i]
		alg := int64(r.Limit.Algorithm) + 4*boolInt(r.Shadow)
		for _, v := range [...]int64{alg, r.Limit.Requests, int64(r.Limit.Period), r.Limit.Burst, r.Hits} {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(v)))
		}
	}
	// b is never written again (a new buffer per call): a string over it
	// saves a copy.
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// takeOne runs a call of one request (without the local cache) as one
// EVALSHA of its algorithm's script (take_fixed.lua), and EVAL if the
// script is missing, and sets *mark, when mark is not nil, to the reply's
// mark (TakeBlock). Its arguments take one allocation (oneCall) besides
// the key's.
func (s *Store) takeOne(ctx context.Context, mode limiter.Mode, r *limiter.Request, res *limiter.Result, now time.Time, mark *int64) error {
	if s.pipe != nil {
		return s.pipeOne(ctx, mode, r, res, now, mark)
	}
	a := r.Limit.Algorithm
	oc := new(oneCall)
	kb := appendKey(make([]byte, 0, keyLen(s.prefix, r.Key)), s.prefix, r.Key)
	oc.key = unsafe.String(unsafe.SliceData(kb), len(kb)) // kb is never written again
	argv := appendOneArgv(oc.buf[:0], r, mode == limiter.CountAll || r.Shadow, now, s.opts)
	oc.argv = unsafe.String(&argv[0], len(argv)) // buf is never written again
	// go-redis writes *string arguments (and reads the key from one for
	// Cluster routing), which saves boxing the strings.
	oc.args = [...]interface{}{"evalsha", oneHashes[a], 1, &oc.key, &oc.argv}
	cmd := s.send(ctx, redis.NewCmd(ctx, oc.args[:]...))
	if isNoScript(cmd.Err()) {
		s.scriptLoaded()
		cmd = s.send(ctx, scriptCmd(ctx, "eval", oneSources[a], []string{oc.key}, oc.argv))
	}
	packed, err := packedReply(cmd)
	if err != nil {
		return err
	}
	return decodeOne(packed, r, res, mark)
}

// packedReply returns the string a script call answered.
func packedReply(cmd *redis.Cmd) (string, error) {
	v, err := cmd.Result()
	if err != nil {
		return "", err
	}
	packed, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%w: got %T, want a string", ErrBadReply, v)
	}
	return packed, nil
}

// decodeOne checks the packed reply of a one-request script and writes its
// result, and its mark to *mark when mark is not nil.
func decodeOne(packed string, r *limiter.Request, res *limiter.Result, mark *int64) error {
	if len(packed) != 8*replyWidth {
		return fmt.Errorf("%w: got %d bytes, want %d", ErrBadReply, len(packed), 8*replyWidth)
	}
	m, err := decodeResult(packed, 0, r, res)
	if err == nil && mark != nil {
		*mark = int64(m)
	}
	return err
}

// oneCall holds the arguments of a one-request script call.
type oneCall struct {
	args [5]interface{}
	key  string
	argv string
	buf  [8 * 8]byte
}

// appendOneArgv appends ARGV[1] of the one-request scripts
// (take_fixed.lua): 8 little-endian doubles, flags now_us now_sub extra_ms
// requests period_ns burst hits.
func appendOneArgv(b []byte, r *limiter.Request, countRefused bool, now time.Time, opts Options) []byte {
	flags, us, sub := boolInt(countRefused), int64(0), int64(0)
	if opts.Now != nil {
		us, sub = splitNanos(now)
	} else {
		flags |= 2 // the script reads Redis's TIME
	}
	for _, v := range [...]int64{flags, us, sub, extraMillis(opts), r.Limit.Requests, int64(r.Limit.Period), r.Limit.Burst, r.Hits} {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(float64(v)))
	}
	return b
}

// oneHashes[a] is the SHA of oneScripts[a], boxed once.
var oneHashes = func() (h [len(oneScripts)]interface{}) {
	for a, sc := range oneScripts {
		h[a] = sc.Hash()
	}
	return h
}()

// splitNanos returns now as Unix microseconds and the nanoseconds beyond
// them (0 to 999).
func splitNanos(now time.Time) (us, sub int64) {
	ns := now.UnixNano()
	us, sub = ns/1000, ns%1000
	if sub < 0 {
		us, sub = us-1, sub+1000
	}
	return us, sub
}

// extraMillis is Options.ExtraTTL in whole milliseconds, rounded up.
func extraMillis(opts Options) int64 {
	return int64(math.Ceil(float64(opts.ExtraTTL) / float64(time.Millisecond)))
}

func boolInt(on bool) int64 {
	if on {
		return 1
	}
	return 0
}
