package insight

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/descriptor"
)

func newFleetRecorder(t *testing.T, rdb redis.UniversalClient, st Settings, clk *fakeClock, name string) *Recorder {
	t.Helper()
	r, err := New(st, Options{Now: clk.Now, Redis: rdb, Replica: name})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestFleetTwoRecorders: two replicas sharing Redis each answer for both,
// with scope fleet and replicas 2; the Redis sketch keeps at most top_k
// members and its keys expire.
func TestFleetTwoRecorders(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client(t)
	ctx := context.Background()
	s := testSet(t)
	rule := match(t, s, ip("x"))
	clk := &fakeClock{t: t0}
	const k = 8
	a := newFleetRecorder(t, rdb, Settings{TopK: k}, clk, "a")
	b := newFleetRecorder(t, rdb, Settings{TopK: k}, clk, "b")
	for i := range 400 {
		a.Record(rule, ip("203.0.113.1"), Refused, 1, nil)
		b.Record(rule, ip("203.0.113.2"), Refused, 1, nil)
		if i%2 == 0 {
			b.Record(rule, ip("203.0.113.1"), Refused, 1, nil)
		}
		// A flood of distinct clients, split over both.
		a.Record(rule, ip(fmt.Sprintf("198.51.100.%d", i)), Admitted, 1, nil)
		b.Record(rule, ip(fmt.Sprintf("192.0.2.%d", i)), Refused, 1, nil)
	}
	// a answers after b flushed (b's query flushes b).
	if _, err := b.Rules(ctx); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Recorder{a, b} {
		ans := offenders(t, r, "5m")
		if ans.Scope != ScopeFleet || ans.Replicas != 2 || ans.Warning != "" {
			t.Fatalf("scope %q replicas %d warning %q, want fleet 2", ans.Scope, ans.Replicas, ans.Warning)
		}
		if len(ans.Offenders) < 2 || ans.Offenders[0].Value != "203.0.113.1" || ans.Offenders[1].Value != "203.0.113.2" {
			t.Fatalf("offenders %+v", ans.Offenders[:min(3, len(ans.Offenders))])
		}
		o1, o2 := ans.Offenders[0], ans.Offenders[1]
		if o1.Refused < 600 || o1.Refused > 600+ans.ErrorBound || o2.Refused < 400 || o2.Refused > 400+ans.ErrorBound {
			t.Errorf("refused %d and %d (bound %d), want 600 and 400 within the bound", o1.Refused, o2.Refused, ans.ErrorBound)
		}
		if ans.ErrorBound > 2*1400/k {
			t.Errorf("error bound %d > 2N/k", ans.ErrorBound)
		}
		if none, err := r.Offenders(ctx, OffendersQuery{Domain: "edge", Rule: "other"}); err != nil || none.Scope != ScopeFleet || len(none.Offenders) != 0 {
			t.Errorf("rule filter: %+v, %v", none, err)
		}
		ra, err := r.Rules(ctx)
		if err != nil || len(ra.Rules) != 1 || ra.Rules[0].Totals.Refused != 1400 || ra.Rules[0].Totals.Admitted != 400 {
			t.Errorf("rules %+v, %v; want refused 1400 admitted 400 fleet-wide", ra.Rules, err)
		}
	}
	// Bounded keys with TTLs.
	keys, err := rdb.Keys(ctx, DefaultRedisPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range keys {
		if strings.HasSuffix(key, ":r") || strings.HasSuffix(key, ":a") {
			if n := rdb.ZCard(ctx, key).Val(); n > k {
				t.Errorf("%s has %d members > k", key, n)
			}
		}
		if strings.HasSuffix(key, ":rs") {
			if n := rdb.HLen(ctx, key).Val(); n > k {
				t.Errorf("%s has %d fields > k", key, n)
			}
		}
		ttl := rdb.TTL(ctx, key).Val()
		persistent := strings.HasSuffix(key, "rules:seen") || strings.HasSuffix(key, "replicas")
		if !persistent && ttl <= 0 {
			t.Errorf("%s has no TTL", key)
		}
	}
}

// TestFleetOnePipeline: a flush is one round trip whatever the number of
// rules and granularities, its sketch merges sent by SHA (EVALSHA); a
// server without the script (new, restarted, SCRIPT FLUSH) costs one more
// round trip with EVAL for the merges it refused, and loses none.
func TestFleetOnePipeline(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client(t)
	h := &countHook{names: map[string]int{}}
	rdb.AddHook(h)
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newFleetRecorder(t, rdb, Settings{}, clk, "a")
	d := descriptor.Descriptor{{Key: "global", Value: "all"}}
	flush := func(at time.Duration) {
		r.Record(match(t, s, ip("x")), ip("203.0.113.1"), Refused, 1, nil)
		r.Record(match(t, s, d), d, Admitted, 1, nil)
		clk.set(t0.Add(at))
		r.tick(context.Background(), t0.Add(at))
	}
	flush(11 * time.Second) // a new server: NOSCRIPT, then EVAL
	if h.calls != 0 || h.pipes != 2 || h.names["eval"] == 0 || h.names["eval"] != h.names["evalsha"] {
		t.Errorf("first flush: %d calls, %d pipelines, commands %v; want two pipelines, each refused EVALSHA sent again as EVAL", h.calls, h.pipes, h.names)
	}
	*h = countHook{names: map[string]int{}}
	flush(22 * time.Second)
	if h.calls != 0 || h.pipes != 1 || h.names["eval"] != 0 || h.names["evalsha"] == 0 {
		t.Errorf("second flush: %d calls, %d pipelines, commands %v; want one pipeline of EVALSHAs", h.calls, h.pipes, h.names)
	}
	if err := rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	*h = countHook{names: map[string]int{}}
	flush(33 * time.Second)
	if h.pipes != 2 || h.names["eval"] == 0 {
		t.Errorf("after SCRIPT FLUSH: %d pipelines, commands %v; want the merges sent again with EVAL", h.pipes, h.names)
	}
	ra, err := r.Rules(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	refused := int64(0)
	for _, rule := range ra.Rules {
		refused += rule.Totals.Refused
	}
	if refused != 3 {
		t.Errorf("fleet totals: %d refused, want the 3 recorded across the three flushes", refused)
	}
	ans := offenders(t, r, "5m")
	if len(ans.Offenders) == 0 || ans.Offenders[0].Value != "203.0.113.1" || ans.Offenders[0].Refused != 3 {
		t.Errorf("offenders %+v, want 203.0.113.1 refused 3 (every sketch merge landed once)", ans.Offenders)
	}
}

type countHook struct {
	calls, pipes int
	names        map[string]int // commands in pipelines, by name
}

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if n := cmd.Name(); n != "hello" && n != "client" { // connection set-up
			h.calls++
		}
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.pipes++
		for _, c := range cmds {
			h.names[c.Name()]++
		}
		return next(ctx, cmds)
	}
}

// TestFleetHistorySurvivesRestart: a new recorder on the same Redis sees
// yesterday's roll-up and top offender.
func TestFleetHistorySurvivesRestart(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client(t)
	ctx := context.Background()
	s := testSet(t)
	rule := match(t, s, ip("x"))
	clk := &fakeClock{t: t0}
	a := newFleetRecorder(t, rdb, Settings{}, clk, "a")
	for range 30 {
		a.Record(rule, ip("203.0.113.5"), Refused, 1, nil)
	}
	a.Record(rule, ip("203.0.113.6"), NearLimit, 1, nil)
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	clk.set(t0.Add(24 * time.Hour))
	b := newFleetRecorder(t, rdb, Settings{}, clk, "b")
	h, err := b.History(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if h.Scope != ScopeFleet || len(h.Days) != 7 {
		t.Fatalf("scope %q, %d days", h.Scope, len(h.Days))
	}
	y := h.Days[5]
	if y.Date != "2026-11-30" || len(y.Rules) != 1 || y.Rules[0].Refused != 30 || y.Rules[0].NearLimit != 1 || y.Rules[0].Admitted != 1 {
		t.Fatalf("yesterday %+v", y)
	}
	if len(y.TopOffenders) == 0 || y.TopOffenders[0].Value != "203.0.113.5" || y.TopOffenders[0].Refused != 30 {
		t.Errorf("yesterday's top %+v", y.TopOffenders)
	}
	var hourly int64
	for _, hr := range h.Hours {
		for _, rc := range hr.Rules {
			hourly += rc.Refused
		}
	}
	if hourly != 30 {
		t.Errorf("hourly refused sum %d, want 30", hourly)
	}
}

// TestFleetFallback: with Redis gone, a replica answers for itself and
// says why.
func TestFleetFallback(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client(t)
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newFleetRecorder(t, rdb, Settings{}, clk, "a")
	r.Record(match(t, s, ip("x")), ip("203.0.113.1"), Refused, 1, nil)
	srv.Kill()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ans, err := r.Offenders(ctx, OffendersQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if ans.Scope != ScopeReplica || ans.Warning == "" || len(ans.Offenders) != 1 {
		t.Errorf("answer %+v, want this replica's with a warning", ans)
	}
}

// TestFleetCluster: the same on a Redis Cluster (each script call's keys
// share a slot through the {rule id} hash tag).
func TestFleetCluster(t *testing.T) {
	c := redistest.StartCluster(t)
	rdb := c.Client(t)
	s := testSet(t)
	rule := match(t, s, ip("x"))
	clk := &fakeClock{t: t0}
	a := newFleetRecorder(t, rdb, Settings{TopK: 8}, clk, "a")
	b := newFleetRecorder(t, rdb, Settings{TopK: 8}, clk, "b")
	for range 20 {
		a.Record(rule, ip("203.0.113.1"), Refused, 1, nil)
		b.Record(rule, ip("203.0.113.2"), Refused, 1, nil)
	}
	if _, err := b.Rules(context.Background()); err != nil {
		t.Fatal(err)
	}
	ans := offenders(t, a, "24h")
	if ans.Scope != ScopeFleet || ans.Replicas != 2 || ans.Warning != "" || len(ans.Offenders) != 2 {
		t.Fatalf("answer %+v", ans)
	}
	for _, o := range ans.Offenders {
		if o.Refused != 20 {
			t.Errorf("%s refused %d, want 20", o.Value, o.Refused)
		}
	}
}

// TestFleetForgetsOldRules: the names of rules expire with retention and a
// rule that stopped reporting for longer leaves rules:seen, so the fleet's
// keys stay bounded as rule paths come and go.
func TestFleetForgetsOldRules(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	rdb := srv.Client(t)
	ctx := context.Background()
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newFleetRecorder(t, rdb, Settings{Retention: 24 * time.Hour}, clk, "a")
	old := match(t, s, ip("x"))
	r.Record(old, ip("203.0.113.1"), Refused, 1, nil)
	r.tick(ctx, t0.Add(11*time.Second))
	oldID := ruleKey(ruleID{old.Domain, old.Path})
	if ttl := rdb.TTL(ctx, r.fleet.nameKey(oldID)).Val(); ttl <= 0 || ttl > 24*time.Hour {
		t.Fatalf("name key TTL %v, want (0, 24h]", ttl)
	}
	if n := rdb.Exists(ctx, DefaultRedisPrefix+"rules").Val(); n != 0 {
		t.Errorf("the unbounded rules hash is written")
	}
	later := t0.Add(25 * time.Hour)
	clk.set(later)
	d := descriptor.Descriptor{{Key: "global", Value: "all"}}
	r.Record(match(t, s, d), d, Admitted, 1, nil)
	r.tick(ctx, later.Add(11*time.Second))
	seen := rdb.ZRange(ctx, DefaultRedisPrefix+"rules:seen", 0, -1).Val()
	if len(seen) != 1 || seen[0] == oldID {
		t.Errorf("rules:seen %v after retention, want only the new rule (not %s)", seen, oldID)
	}
}
