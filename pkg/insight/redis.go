package insight

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis layout (P is Settings.RedisPrefix, R a rule's id: 16 hex digits of
// the SHA-256 of domain NUL rule; G a granularity: m, t, w, h or d for
// buckets of a minute, ten minutes, two hours, an hour or a day; S a bucket's start in unix
// seconds):
//
//	P rules:seen          zset  R by last flush; trimmed to max_rules, older than retention removed
//	P {R}:n               string domain NUL rule; TTL retention
//	P replicas            zset  replica by last flush; older than retention removed
//	P {R}:t               hash  totals by outcome (0..3); TTL retention
//	P {R}:G:S:c           hash  counts by outcome (G = m, h, d)
//	P {R}:G:S:r, :a       zset  (G = m, t, w, d) refused / admitted sketch: at most top_k
//	                            members, maintained by Space-Saving in Lua
//	P {R}:G:S:rs, :as     hash  member → "first:last" seen
//	P {R}:G:S:m           hash  rf, af: floors added by merged deltas
//
// Every bucket key has a TTL (gran.ttl); the {R} hash tag keeps a rule's
// keys of one script call in one Cluster slot.
type fleet struct {
	rdb     redis.UniversalClient
	st      Settings
	replica string
}

var _ source = (*fleet)(nil)

// gran is a bucket granularity in Redis: of sketches (for the offenders
// windows), of counts (rates and history), or both.
type gran struct {
	code           string
	width          int64
	sketch, counts bool
	ttl            func(Settings) time.Duration
}

var grans = []gran{
	{"m", 60, true, true, func(Settings) time.Duration { return 10 * time.Minute }},
	{"t", 600, true, false, func(Settings) time.Duration { return 80 * time.Minute }},
	{"w", 7200, true, false, func(Settings) time.Duration { return 28 * time.Hour }},
	{"h", 3600, false, true, func(Settings) time.Duration { return 50 * time.Hour }},
	{"d", 86400, true, true, func(s Settings) time.Duration { return s.Retention + day }},
}

func granOf(width int64) gran {
	for _, g := range grans {
		if g.width == width {
			return g
		}
	}
	return grans[len(grans)-1]
}

func ruleKey(id ruleID) string {
	sum := sha256.Sum256([]byte(id.Domain + "\x00" + id.Rule))
	return hex.EncodeToString(sum[:8])
}

// nameKey holds the rule's domain and name (in its slot: a Cluster reads
// the names of many rules in one pipeline).
func (f *fleet) nameKey(rid string) string {
	return f.st.RedisPrefix + "{" + rid + "}:n"
}

func (f *fleet) bucketKey(rid string, g gran, start int64) string {
	return f.st.RedisPrefix + "{" + rid + "}:" + g.code + ":" + strconv.FormatInt(start, 10)
}

// spaceSaving merges a delta list into a bucket's sketch: an existing
// member gains the count; a new one is added while there are fewer than k;
// else it replaces the minimum and inherits its count (Space-Saving).
//
//	KEYS: zset, seen hash, meta hash
//	ARGV: k, ttl seconds, floor field, floor of the delta,
//	      then value, count, first, last for each entry
var spaceSaving = redis.NewScript(`
local k = tonumber(ARGV[1])
for i = 5, #ARGV, 4 do
  local v, w, f, l = ARGV[i], tonumber(ARGV[i+1]), tonumber(ARGV[i+2]), tonumber(ARGV[i+3])
  if redis.call('ZSCORE', KEYS[1], v) then
    redis.call('ZINCRBY', KEYS[1], w, v)
    local s = redis.call('HGET', KEYS[2], v)
    if s then
      local c = string.find(s, ':')
      f = math.min(f, tonumber(string.sub(s, 1, c - 1)))
      l = math.max(l, tonumber(string.sub(s, c + 1)))
    end
  elseif redis.call('ZCARD', KEYS[1]) < k then
    redis.call('ZADD', KEYS[1], w, v)
  else
    local m = redis.call('ZPOPMIN', KEYS[1])
    redis.call('HDEL', KEYS[2], m[1])
    redis.call('ZADD', KEYS[1], tonumber(m[2]) + w, v)
  end
  redis.call('HSET', KEYS[2], v, string.format('%d:%d', f, l))
end
redis.call('HINCRBY', KEYS[3], ARGV[3], ARGV[4])
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], ARGV[2]) end
return 0
`)

// flushLocked sends the pending deltas to Redis in one pipelined call and
// forgets them (also on failure: memory stays bounded). Recorder.mu held.
func (r *Recorder) flushLocked(ctx context.Context) error {
	f := r.fleet
	pending := r.pending
	r.pending = make(map[int64]map[*ruleState]*delta)
	now := r.opts.Now().Unix()
	pipe := f.rdb.Pipeline()
	pipe.ZAdd(ctx, f.st.RedisPrefix+"replicas", redis.Z{Score: float64(now), Member: f.replica})
	pipe.ZRemRangeByScore(ctx, f.st.RedisPrefix+"replicas", "-inf", strconv.FormatInt(now-int64(f.st.Retention/time.Second), 10))
	seen := map[*ruleState]bool{}
	var sketches []sketchCall
	for minute, m := range pending {
		for rs, d := range m {
			sketches = f.pushDelta(ctx, pipe, rs, minute, d, sketches)
			seen[rs] = true
		}
	}
	for rs := range seen {
		rid := ruleKey(rs.id)
		// Written every time: a Redis that lost its data relearns the name,
		// and a rule that stops reporting is forgotten after retention.
		pipe.Set(ctx, f.nameKey(rid), rs.id.Domain+"\x00"+rs.id.Rule, f.st.Retention)
		pipe.ZAdd(ctx, f.st.RedisPrefix+"rules:seen", redis.Z{Score: float64(now), Member: rid})
	}
	if len(seen) > 0 {
		pipe.ZRemRangeByRank(ctx, f.st.RedisPrefix+"rules:seen", 0, -int64(f.st.MaxRules)-1)
	}
	pipe.ZRemRangeByScore(ctx, f.st.RedisPrefix+"rules:seen", "-inf", strconv.FormatInt(now-int64(f.st.Retention/time.Second), 10))
	cmds, _ := pipe.Exec(ctx) // errors are per command, checked below
	for _, c := range cmds {
		if err := c.Err(); err != nil && !isNoScript(err) {
			return fmt.Errorf("insight: merge into Redis: %w", err)
		}
	}
	return f.resendSketches(ctx, sketches)
}

// sketchCall is one EVALSHA of spaceSaving in a flush, kept so that a
// server that lost the script gets it again.
type sketchCall struct {
	cmd  *redis.Cmd
	keys []string
	args []any
}

// resendSketches sends again, with EVAL, the sketch merges that a server
// answered NOSCRIPT (after a restart or SCRIPT FLUSH; they did not run),
// in one more pipeline.
func (f *fleet) resendSketches(ctx context.Context, calls []sketchCall) error {
	var retry redis.Pipeliner
	for _, c := range calls {
		if isNoScript(c.cmd.Err()) {
			if retry == nil {
				retry = f.rdb.Pipeline()
			}
			spaceSaving.Eval(ctx, retry, c.keys, c.args...)
		}
	}
	if retry == nil {
		return nil
	}
	if _, err := retry.Exec(ctx); err != nil {
		return fmt.Errorf("insight: merge into Redis: %w", err)
	}
	return nil
}

func isNoScript(err error) bool { return redis.HasErrorPrefix(err, "NOSCRIPT") }

// pushDelta queues one rule's delta of one minute: counts and sketches
// into each granularity's bucket, and the totals. It appends the sketch
// merges (EVALSHA) to calls and returns it.
func (f *fleet) pushDelta(ctx context.Context, pipe redis.Pipeliner, rs *ruleState, minute int64, d *delta, calls []sketchCall) []sketchCall {
	rid := ruleKey(rs.id)
	tot := f.st.RedisPrefix + "{" + rid + "}:t"
	f.incrCounts(ctx, pipe, tot, d.c)
	pipe.Expire(ctx, tot, f.st.Retention)
	for _, g := range grans {
		key := f.bucketKey(rid, g, minute-minute%g.width)
		ttl := g.ttl(f.st)
		if g.counts {
			f.incrCounts(ctx, pipe, key+":c", d.c)
			pipe.Expire(ctx, key+":c", ttl)
		}
		if !g.sketch {
			continue
		}
		for _, s := range [...]struct {
			l          list
			z, seen, f string
		}{{d.ref, ":r", ":rs", "rf"}, {d.adm, ":a", ":as", "af"}} {
			if len(s.l.Entries) == 0 && s.l.Floor == 0 {
				continue
			}
			args := make([]any, 0, 4+4*len(s.l.Entries))
			args = append(args, f.st.TopK, int64(ttl/time.Second), s.f, s.l.Floor)
			for _, e := range s.l.Entries {
				args = append(args, e.Value, e.Count, e.First, e.Last)
			}
			keys := []string{key + s.z, key + s.seen, key + ":m"}
			calls = append(calls, sketchCall{spaceSaving.EvalSha(ctx, pipe, keys, args...), keys, args})
		}
	}
	return calls
}

func (f *fleet) incrCounts(ctx context.Context, pipe redis.Pipeliner, key string, c counts) {
	for o, n := range c {
		if n != 0 {
			pipe.HIncrBy(ctx, key, strconv.Itoa(o), n)
		}
	}
}

func (f *fleet) scope() string { return ScopeFleet }

func (f *fleet) replicas(ctx context.Context, now, span int64) (int, error) {
	n, err := f.rdb.ZCount(ctx, f.st.RedisPrefix+"replicas", strconv.FormatInt(now-span, 10), "+inf").Result()
	if err != nil {
		return 0, fmt.Errorf("insight: count replicas: %w", err)
	}
	return int(n), nil
}

// rules lists the rules that reported, with their ids.
func (f *fleet) rules(ctx context.Context) ([]ruleID, []string, error) {
	rids, err := f.rdb.ZRange(ctx, f.st.RedisPrefix+"rules:seen", 0, -1).Result()
	if err != nil || len(rids) == 0 {
		return nil, nil, wrapRead(err)
	}
	pipe := f.rdb.Pipeline()
	names := make([]*redis.StringCmd, len(rids))
	for i, rid := range rids {
		names[i] = pipe.Get(ctx, f.nameKey(rid))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, wrapRead(err)
	}
	var ids []ruleID
	var keep []string
	for i, n := range names {
		if err := n.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return nil, nil, wrapRead(err)
		}
		d, rl, found := strings.Cut(n.Val(), "\x00")
		if !found { // expired with retention, or not yet written
			continue
		}
		ids, keep = append(ids, ruleID{d, rl}), append(keep, rids[i])
	}
	return ids, keep, nil
}

func wrapRead(err error) error {
	if err == nil || err == redis.Nil {
		return nil
	}
	return fmt.Errorf("insight: read Redis: %w", err)
}

// sketchCmds are the commands reading one bucket's sketch.
type sketchCmds struct {
	z    *redis.ZSliceCmd
	seen *redis.MapStringStringCmd
}

func (f *fleet) readSketch(ctx context.Context, pipe redis.Pipeliner, key string) sketchCmds {
	return sketchCmds{z: pipe.ZRangeWithScores(ctx, key, 0, -1), seen: pipe.HGetAll(ctx, key+"s")}
}

// list converts a bucket's sketch to a list: its floor is the zset's
// minimum when it holds k members, plus the floors of the merged deltas.
func (c sketchCmds) list(k int, floor int64) list {
	zs, _ := c.z.Result()
	seen, _ := c.seen.Result()
	l := list{Floor: floor, Entries: make([]Entry, 0, len(zs))}
	for _, z := range zs {
		v, _ := z.Member.(string)
		e := Entry{Value: v, Count: int64(z.Score)}
		if fl, ok := seen[v]; ok {
			a, b, _ := strings.Cut(fl, ":")
			e.First, _ = strconv.ParseInt(a, 10, 64)
			e.Last, _ = strconv.ParseInt(b, 10, 64)
		}
		l.N += e.Count
		l.Entries = append(l.Entries, e)
	}
	if len(zs) >= k && len(zs) > 0 {
		l.Floor += int64(zs[0].Score)
	}
	l.sort()
	return l
}

func (f *fleet) windows(ctx context.Context, now int64, w window, keep func(ruleID) bool) ([]ruleWindow, error) {
	ids, rids, err := f.rules(ctx)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	if keep != nil {
		n := 0
		for i, id := range ids {
			if keep(id) {
				ids[n], rids[n] = id, rids[i]
				n++
			}
		}
		ids, rids = ids[:n], rids[:n]
	}
	g := granOf(w.width)
	starts := bucketStarts(now, w.span, w.width)
	type cmds struct {
		ref, adm sketchCmds
		meta     *redis.MapStringStringCmd
	}
	all := make([][]cmds, len(ids))
	pipe := f.rdb.Pipeline()
	for i, rid := range rids {
		for _, s := range starts {
			key := f.bucketKey(rid, g, s)
			all[i] = append(all[i], cmds{ref: f.readSketch(ctx, pipe, key+":r"), adm: f.readSketch(ctx, pipe, key+":a"), meta: pipe.HGetAll(ctx, key+":m")})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, wrapRead(err)
	}
	k := f.st.TopK
	out := make([]ruleWindow, 0, len(ids))
	for i, id := range ids {
		var refs, adms []list
		for _, c := range all[i] {
			m, _ := c.meta.Result()
			refs = append(refs, c.ref.list(k, atoi(m["rf"])))
			adms = append(adms, c.adm.list(k, atoi(m["af"])))
		}
		out = append(out, ruleWindow{id: id, ref: merge(k, refs...), adm: merge(k, adms...)})
	}
	return out, nil
}

func atoi(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func countsFrom(m map[string]string) counts {
	var c counts
	for o := range c {
		c[o] = atoi(m[strconv.Itoa(o)])
	}
	return c
}

func (f *fleet) rates(ctx context.Context, now int64) ([]ruleRates, error) {
	ids, rids, err := f.rules(ctx)
	if err != nil || len(ids) == 0 {
		return nil, err
	}
	starts := bucketStarts(now, 300, 60)
	pipe := f.rdb.Pipeline()
	mins := make([][]*redis.MapStringStringCmd, len(ids))
	tots := make([]*redis.MapStringStringCmd, len(ids))
	for i, rid := range rids {
		for _, s := range starts {
			mins[i] = append(mins[i], pipe.HGetAll(ctx, f.bucketKey(rid, grans[0], s)+":c"))
		}
		tots[i] = pipe.HGetAll(ctx, f.st.RedisPrefix+"{"+rid+"}:t")
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, wrapRead(err)
	}
	out := make([]ruleRates, len(ids))
	for i, id := range ids {
		out[i].id = id
		for j, c := range mins[i] {
			if j < len(out[i].minutes) {
				out[i].minutes[j] = countsFrom(c.Val())
			}
		}
		out[i].total = countsFrom(tots[i].Val())
	}
	return out, nil
}

func (f *fleet) history(ctx context.Context, now int64, days int) (histData, error) {
	h := histData{hours: map[int64]map[ruleID]counts{}, days: map[int64]map[ruleID]counts{}, tops: map[int64][]Offender{}}
	ids, rids, err := f.rules(ctx)
	if err != nil || len(ids) == 0 {
		return h, err
	}
	hg, dg := granOf(3600), granOf(86400)
	hstarts, dstarts := bucketStarts(now, 47*3600, 3600), bucketStarts(now, int64(days-1)*86400, 86400)
	type dayCmds struct {
		c        *redis.MapStringStringCmd
		ref, adm sketchCmds
	}
	pipe := f.rdb.Pipeline()
	hc := make([][]*redis.MapStringStringCmd, len(ids))
	dc := make([][]dayCmds, len(ids))
	for i, rid := range rids {
		for _, s := range hstarts {
			hc[i] = append(hc[i], pipe.HGetAll(ctx, f.bucketKey(rid, hg, s)+":c"))
		}
		for _, s := range dstarts {
			key := f.bucketKey(rid, dg, s)
			dc[i] = append(dc[i], dayCmds{c: pipe.HGetAll(ctx, key+":c"), ref: f.readSketch(ctx, pipe, key+":r"), adm: f.readSketch(ctx, pipe, key+":a")})
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return h, wrapRead(err)
	}
	k := f.st.TopK
	for i, id := range ids {
		for j, s := range hstarts {
			put(h.hours, s, id, countsFrom(hc[i][j].Val()))
		}
		for j, s := range dstarts {
			put(h.days, s, id, countsFrom(dc[i][j].c.Val()))
			if top := topOffenders(id, dc[i][j].ref.list(k, 0), dc[i][j].adm.list(k, 0), dayTopN); len(top) > 0 {
				h.tops[s] = append(h.tops[s], top...)
			}
		}
	}
	return h, nil
}
