package insight

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
)

// Outcome is the decision of one counted descriptor.
type Outcome uint8

const (
	Admitted  Outcome = iota // admitted below the near-limit ratio
	NearLimit                // admitted at or above the near-limit ratio
	Refused                  // refused (over limit)
	Shadow                   // a shadow rule that would have refused: admitted
	numOutcomes
)

// Options are a Recorder's runtime dependencies (Settings come from the
// server file).
type Options struct {
	// Redis, when set, makes insight fleet-wide: the Recorder merges its
	// deltas into it every FlushInterval and answers from it.
	Redis redis.UniversalClient
	// Replica names this replica in Redis (default host:pid:random).
	Replica string
	// Logger receives throttled warnings (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Recorder records rule decisions into bounded heavy-hitter sketches and
// counters and answers the insight API. Record is safe for concurrent use
// and is meant for the request path; a nil *Recorder records nothing.
type Recorder struct {
	st      Settings
	opts    Options
	nshards int
	clock   atomic.Int64 // unix seconds, advanced by tick
	cache   atomic.Pointer[ruleCache]
	dropped atomic.Int64 // decisions of rules beyond MaxRules

	mu         sync.Mutex // guards what follows, and every ruleState's slow fields
	byID       map[ruleID]*ruleState
	order      []*ruleState
	lastMinute int64
	lastFlush  int64
	pending    map[int64]map[*ruleState]*delta // fleet: deltas by minute start
	fleet      *fleet
	lastWarn   int64 // unix seconds of the last warning

	stop chan struct{}
	done chan struct{}
}

// ruleID names a rule: its domain and path.
type ruleID struct{ Domain, Rule string }

// ruleCache finds a rule's state without a lock: by the Rule's pointer
// (rules of a snapshot are immutable), or, for Envoy overrides, whose
// Rule is built per request, by name.
type ruleCache struct {
	byPtr map[*descriptor.Rule]*ruleState
	byID  map[ruleID]*ruleState
}

// ruleState is what one rule records.
type ruleState struct {
	id     ruleID
	shards []shard
	spare  hot // guarded by Recorder.mu, swapped with a shard's on drain

	// Guarded by Recorder.mu.
	total                         counts
	minutes, tens, twoHours, days ring                 // windows 5m, 1h, 24h, 7d
	hourly                        countRing            // last 48 hours
	daily                         countRing            // retention
	archive                       map[int64][]Offender // day start → top offenders, once out of days
}

// shard is one lock's worth of a rule's hot state; a Record picks a shard
// at random so that concurrent requests seldom share a lock.
type shard struct {
	mu sync.Mutex
	h  hot
	_  [64]byte // keep shards on separate cache lines
}

// hot is what a shard accumulates between drains.
type hot struct {
	ref, adm *sketch
	c        counts
}

func newHot(k int) hot { return hot{ref: newSketch(k), adm: newSketch(k)} }

// delta is what one drain took from a rule.
type delta struct {
	ref, adm list
	c        counts
}

// New returns a Recorder. Call Start to run its clock and flusher, and
// Close to stop them (a final flush included).
func New(st Settings, opts Options) (*Recorder, error) {
	if err := st.Validate(); err != nil {
		return nil, err
	}
	st = st.withDefaults()
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Replica == "" {
		opts.Replica = replicaName()
	}
	n := 1
	for n < runtime.GOMAXPROCS(0) && n < 16 {
		n *= 2
	}
	r := &Recorder{st: st, opts: opts, nshards: n, byID: make(map[ruleID]*ruleState), pending: make(map[int64]map[*ruleState]*delta)}
	if opts.Redis != nil {
		r.fleet = &fleet{rdb: opts.Redis, st: st, replica: opts.Replica}
	}
	now := opts.Now().Unix()
	r.clock.Store(now)
	r.lastMinute, r.lastFlush = now-now%60, now
	r.cache.Store(&ruleCache{})
	return r, nil
}

func replicaName() string {
	h, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s:%d:%x", h, os.Getpid(), b)
}

// Settings returns the settings, defaults filled in.
func (r *Recorder) Settings() Settings { return r.st }

// Record counts one decided descriptor d of rule with its outcome and hits
// (at least 1 is counted). ids are the identities of the rules d matched
// (descriptor.Set.Identities; nil: none listed, the default descriptor
// keys). An entry under ids' API key descriptor key is shown as the listed
// key's id, or as "sha256:" and the first 12 hex digits of its digest: both
// APIs give such entries in canonical form (the id, or the HashValue
// form), and any other value is hashed here, so a key is never recorded in
// clear. Record takes one uncontended lock (of one of the rule's shards)
// and allocates only when the value is new to its shard's sketch.
func (r *Recorder) Record(rule *descriptor.Rule, d descriptor.Descriptor, o Outcome, hits int64, ids descriptor.Identities) {
	if r == nil || rule == nil || o >= numOutcomes {
		return
	}
	rs := r.state(rule)
	if rs == nil {
		return
	}
	var buf [maxValueLen + 64]byte
	key := r.appendValue(buf[:0], rule, d, ids)
	w := max(hits, 1)
	now := r.clock.Load()
	sh := &rs.shards[mrand.Uint32()&uint32(len(rs.shards)-1)]
	sh.mu.Lock()
	sh.h.c[o] += w
	if o == Refused {
		sh.h.ref.add(key, w, now)
	} else {
		sh.h.adm.add(key, w, now)
	}
	sh.mu.Unlock()
}

// state returns the state of rule, creating it unless MaxRules are
// tracked (then nil).
func (r *Recorder) state(rule *descriptor.Rule) *ruleState {
	c := r.cache.Load()
	if !rule.Override {
		if rs, ok := c.byPtr[rule]; ok {
			return rs
		}
	} else if rs, ok := c.byID[ruleID{rule.Domain, rule.Path}]; ok {
		return rs
	}
	return r.slowState(rule)
}

func (r *Recorder) slowState(rule *descriptor.Rule) *ruleState {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := ruleID{rule.Domain, rule.Path}
	rs := r.byID[id]
	id = ruleID{strings.Clone(rule.Domain), strings.Clone(rule.Path)}
	switch {
	case rs != nil:
	case len(r.byID) >= r.st.MaxRules:
		// Cached as nil: the rule's later decisions return at once.
		r.dropped.Add(1)
		r.warnf(context.Background(), "insight: max_rules reached; the decisions of further rules are not recorded",
			fmt.Errorf("rule %s of domain %s not tracked (max_rules %d)", id.Rule, id.Domain, r.st.MaxRules))
	default:
		rs = r.newState(id)
		r.byID[id] = rs
		r.order = append(r.order, rs)
	}
	old := r.cache.Load()
	c := &ruleCache{byPtr: make(map[*descriptor.Rule]*ruleState, len(old.byPtr)+1), byID: make(map[ruleID]*ruleState, len(old.byID)+1)}
	if len(old.byPtr) < maxCachedRules { // else forget old snapshots' rules
		for k, v := range old.byPtr {
			c.byPtr[k] = v
		}
	}
	for k, v := range old.byID {
		c.byID[k] = v
	}
	if rule.Override {
		c.byID[id] = rs
	} else {
		c.byPtr[rule] = rs
	}
	r.cache.Store(c)
	return rs
}

// maxCachedRules bounds the rule pointers cached (those of old snapshots
// stay until it is reached).
const maxCachedRules = 1 << 16

func (r *Recorder) newState(id ruleID) *ruleState {
	k := r.st.TopK
	rs := &ruleState{
		id: id, shards: make([]shard, r.nshards), spare: newHot(k),
		minutes: newRing(60, 6), tens: newRing(600, 7), twoHours: newRing(7200, 13), days: newRing(86400, 8),
		hourly: newCountRing(3600, 49), daily: newCountRing(86400, r.st.retentionDays()+1),
		archive: make(map[int64][]Offender),
	}
	for i := range rs.shards {
		rs.shards[i].h = newHot(k)
	}
	return rs
}

// maxValueLen bounds a recorded value; longer ones are recorded as their
// "sha256:" digest, so a counter's memory is bounded too.
const maxValueLen = 128

const hashPrefix = "sha256:"

// appendValue appends the value a client is shown as: the values of d's
// distinct entries (descriptor.Rule.Distinct), alone when there is one,
// else as key=value pairs separated by spaces; "*" when the rule has a
// single counter.
func (r *Recorder) appendValue(dst []byte, rule *descriptor.Rule, d descriptor.Descriptor, ids descriptor.Identities) []byte {
	k := keys{ids: ids, key: extract.DefaultAPIKeyKey, now: r.clock.Load()}
	if ids != nil {
		k.key = ids.APIKeyKey()
	}
	n, last := 0, -1
	for i := range d {
		if rule.Distinct(i) {
			n, last = n+1, i
		}
	}
	switch n {
	case 0:
		return append(dst, '*')
	case 1:
		dst = k.appendEntry(dst, d[last])
	default:
		for i := range d {
			if !rule.Distinct(i) {
				continue
			}
			if len(dst) > 0 {
				dst = append(dst, ' ')
			}
			dst = append(dst, d[i].Key...)
			dst = append(dst, '=')
			dst = k.appendEntry(dst, d[i])
		}
	}
	if len(dst) > maxValueLen {
		sum := sha256.Sum256(dst)
		dst = append(dst[:0], hashPrefix...)
		dst = hex.AppendEncode(dst, sum[:6])
	}
	return dst
}

// keys says how API key entries are shown.
type keys struct {
	ids descriptor.Identities
	key string // the API key descriptor key
	now int64  // unix seconds, for listings' expiry
}

func (k keys) appendEntry(dst []byte, e descriptor.Entry) []byte {
	v := e.Value
	if e.Key != k.key {
		return append(dst, v...)
	}
	switch {
	case hashed(v):
		return append(dst, v[:len(hashPrefix)+12]...)
	case k.ids != nil && k.ids.ListedKey(v, time.Unix(k.now, 0)) != nil:
		return append(dst, v...)
	}
	sum := sha256.Sum256(stringBytes(v))
	dst = append(dst, hashPrefix...)
	return hex.AppendEncode(dst, sum[:6])
}

// hashed reports whether v is a "sha256:" digest of at least 12 hex digits.
func hashed(v string) bool {
	if !strings.HasPrefix(v, hashPrefix) || len(v) < len(hashPrefix)+12 {
		return false
	}
	for _, c := range v[len(hashPrefix):] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Start runs the clock (every second) and, with Redis, the flusher, until
// Close.
func (r *Recorder) Start() {
	if r == nil || r.stop != nil {
		return
	}
	r.stop, r.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(r.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case <-t.C:
				r.tick(context.Background(), r.opts.Now())
			}
		}
	}()
}

// Close stops the background work and, with Redis, flushes what is left
// (bounded by ctx).
func (r *Recorder) Close(ctx context.Context) error {
	if r == nil {
		return nil
	}
	if r.stop != nil {
		close(r.stop)
		<-r.done
		r.stop = nil
	}
	if r.fleet == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.drainLocked(r.opts.Now().Unix())
	return r.flushLocked(ctx)
}

// tick advances the clock to now: at a new minute it drains the shards
// into the previous minute's buckets, and with Redis it flushes every
// FlushInterval.
func (r *Recorder) tick(ctx context.Context, now time.Time) {
	t := now.Unix()
	r.clock.Store(t)
	r.mu.Lock()
	defer r.mu.Unlock()
	minute := t - t%60
	if minute != r.lastMinute {
		r.drainLocked(minute - 1) // what was recorded belongs to the minute that ended
		r.lastMinute = minute
	}
	if r.fleet != nil && t-r.lastFlush >= int64(r.st.FlushInterval/time.Second) {
		r.lastFlush = t
		r.drainLocked(t)
		if err := r.flushLocked(ctx); err != nil {
			r.warnf(ctx, "insight: merge into Redis failed; this interval's deltas are dropped", err)
		}
	}
}

// drainLocked moves every shard's hot state into the rule's buckets at t
// (and, with Redis, into the pending deltas).
func (r *Recorder) drainLocked(t int64) {
	k := r.st.TopK
	for _, rs := range r.order {
		d, ok := rs.drain(k)
		if !ok {
			continue
		}
		rs.fold(k, t, d)
		if r.fleet == nil {
			continue
		}
		minute := t - t%60
		m := r.pending[minute]
		if m == nil {
			m = make(map[*ruleState]*delta)
			r.pending[minute] = m
		}
		if p := m[rs]; p != nil {
			p.ref, p.adm = merge(k, p.ref, d.ref), merge(k, p.adm, d.adm)
			p.c.add(d.c)
		} else {
			m[rs] = &d
		}
	}
}

// drain swaps out each shard's hot state and merges it.
func (rs *ruleState) drain(k int) (delta, bool) {
	var d delta
	var refs, adms []list
	for i := range rs.shards {
		sh := &rs.shards[i]
		sh.mu.Lock()
		if sh.h.c.zero() {
			sh.mu.Unlock()
			continue
		}
		sh.h, rs.spare = rs.spare, sh.h
		sh.mu.Unlock()
		h := &rs.spare
		refs, adms = append(refs, h.ref.top()), append(adms, h.adm.top())
		d.c.add(h.c)
		h.ref.reset()
		h.adm.reset()
		h.c = counts{}
	}
	if d.c.zero() {
		return d, false
	}
	d.ref, d.adm = merge(k, refs...), merge(k, adms...)
	return d, true
}

// fold adds a drained delta at time t to the rule's totals, windows and
// history.
func (rs *ruleState) fold(k int, t int64, d delta) {
	rs.total.add(d.c)
	rs.minutes.add(k, t, d.ref, d.adm, d.c)
	rs.tens.add(k, t, d.ref, d.adm, d.c)
	rs.twoHours.add(k, t, d.ref, d.adm, d.c)
	if old, ok := rs.days.add(k, t, d.ref, d.adm, d.c); ok {
		rs.archive[old.start] = topOffenders(rs.id, old.ref, old.adm, dayTopN)
	}
	rs.hourly.add(t, d.c)
	rs.daily.add(t, d.c)
	for start := range rs.archive {
		if _, ok := rs.daily.at(start); !ok {
			delete(rs.archive, start)
		}
	}
}

// dayTopN is the number of top offenders kept per rule and day.
const dayTopN = 10

// countRing keeps counts per bucket of width, the newest len(b).
type countRing struct {
	width int64
	b     []countBucket
}

type countBucket struct {
	start int64
	c     counts
}

func newCountRing(width int64, n int) countRing {
	return countRing{width: width, b: make([]countBucket, n)}
}

func (r *countRing) add(t int64, c counts) {
	start := t - t%r.width
	b := &r.b[(start/r.width)%int64(len(r.b))]
	if b.start != start {
		*b = countBucket{start: start}
	}
	b.c.add(c)
}

func (r *countRing) at(start int64) (counts, bool) {
	b := &r.b[(start/r.width)%int64(len(r.b))]
	return b.c, b.start == start && start != 0
}

// warnf logs a warning at most once a minute. Recorder.mu held.
func (r *Recorder) warnf(ctx context.Context, msg string, err error) {
	now := r.opts.Now().Unix()
	if now-r.lastWarn < 60 {
		return
	}
	r.lastWarn = now
	r.opts.Logger.WarnContext(ctx, msg, "err", err)
}
