package insight

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
)

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// t0 is a Monday 10:00:30 UTC.
var t0 = time.Date(2026, 11, 30, 10, 0, 30, 0, time.UTC)

// testSet has a per-IP rule, a per-API-key rule and a two-level rule.
func testSet(t testing.TB) *descriptor.Set {
	t.Helper()
	rl := func(n int64) *descriptor.RateLimit {
		return &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: n}
	}
	s, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "remote_address", RateLimit: rl(10)},
		{Key: "api_key", RateLimit: rl(10)},
		{Key: "path", Value: "/api/*", Descriptors: []descriptor.Node{{Key: "user", RateLimit: rl(5)}}},
		{Key: "global", Value: "all", RateLimit: rl(100)},
	}}}, descriptor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func match(t testing.TB, s *descriptor.Set, d descriptor.Descriptor) *descriptor.Rule {
	t.Helper()
	r, ok := s.Match("edge", d)
	if !ok {
		t.Fatalf("no rule matches %v", d)
	}
	return r
}

func ip(v string) descriptor.Descriptor {
	return descriptor.Descriptor{{Key: "remote_address", Value: v}}
}

func newTestRecorder(t testing.TB, st Settings, clk *fakeClock) *Recorder {
	t.Helper()
	r, err := New(st, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func offenders(t testing.TB, r *Recorder, window string) OffendersAnswer {
	t.Helper()
	a, err := r.Offenders(context.Background(), OffendersQuery{Window: window, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestValues(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{}, clk)
	ids, err := extract.NewIdentities(extract.IdentitiesOptions{
		APIKeys: []extract.APIKeyListing{{Digest: extract.HashAPIKey("sk-a"), Identity: extract.Identity{ID: "team-a"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		d    descriptor.Descriptor
		ids  descriptor.Identities
		want string
	}{
		{ip("203.0.113.7"), nil, "203.0.113.7"},
		// Canonical forms: a listed id stays, a digest is shortened.
		{descriptor.Descriptor{{Key: "api_key", Value: "team-a"}}, ids, "team-a"},
		{descriptor.Descriptor{{Key: "api_key", Value: "sha256:0123456789abcdef0123456789abcdef"}}, ids, "sha256:0123456789ab"},
		// Anything else under the API key descriptor key is hashed: a key
		// in clear, or an id that is not listed.
		{descriptor.Descriptor{{Key: "api_key", Value: "s3cr3t"}}, ids, "sha256:" + sha12("s3cr3t")},
		{descriptor.Descriptor{{Key: "api_key", Value: "team-a"}}, nil, "sha256:" + sha12("team-a")},
		{descriptor.Descriptor{{Key: "path", Value: "/api/x"}, {Key: "user", Value: "bob"}}, nil, "path=/api/x user=bob"},
		{descriptor.Descriptor{{Key: "global", Value: "all"}}, nil, "*"},
		{ip(strings.Repeat("x", 200)), nil, "sha256:" + sha12(strings.Repeat("x", 200))},
	} {
		rule := match(t, s, tc.d)
		if got := string(r.appendValue(nil, rule, tc.d, tc.ids)); got != tc.want {
			t.Errorf("value of %v (identities %v) = %q, want %q", tc.d, tc.ids != nil, got, tc.want)
		}
	}
}

func sha12(v string) string {
	return extract.HashValue(v)[len("sha256:"):][:12]
}

// TestRecordAndRank: three heavy clients among many rank first, and an API
// key never appears in clear.
func TestRecordAndRank(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{TopK: 16}, clk)
	rule := match(t, s, ip("x"))
	for i := range 3000 {
		r.Record(rule, ip(fmt.Sprintf("198.51.100.%d", i%250)), Admitted, 1, nil)
		if i%3 == 0 {
			for h := range 3 {
				r.Record(rule, ip(fmt.Sprintf("203.0.113.%d", h)), Refused, 1, nil)
			}
		}
	}
	keyRule := match(t, s, descriptor.Descriptor{{Key: "api_key", Value: "k"}})
	r.Record(keyRule, descriptor.Descriptor{{Key: "api_key", Value: "very-secret"}}, Refused, 1, nil)
	a := offenders(t, r, "5m")
	if a.Scope != ScopeReplica || a.Replicas != 1 {
		t.Errorf("scope %q replicas %d, want replica 1", a.Scope, a.Replicas)
	}
	if len(a.Offenders) < 3 {
		t.Fatalf("offenders %+v", a.Offenders)
	}
	for h := range 3 {
		o := a.Offenders[h]
		if !strings.HasPrefix(o.Value, "203.0.113.") || o.Refused < 1000 || o.Refused > 1000+a.ErrorBound {
			t.Errorf("offender %d = %+v (bound %d), want a heavy one with 1000 refused", h, o, a.ErrorBound)
		}
		if o.FirstSeen.IsZero() || o.LastSeen.Before(o.FirstSeen) {
			t.Errorf("offender %d seen %v..%v", h, o.FirstSeen, o.LastSeen)
		}
	}
	body, _ := json.Marshal(a)
	if strings.Contains(string(body), "very-secret") {
		t.Errorf("API key in clear in %s", body)
	}
	if !strings.Contains(string(body), "sha256:"+sha12("very-secret")) {
		t.Errorf("hashed API key missing from %s", body)
	}
	d, err := r.Detail(context.Background(), "203.0.113.1", "")
	if err != nil || len(d.Rules) != 1 || d.Rules[0].Refused < 1000 || d.Window != "24h" {
		t.Errorf("detail = %+v, %v", d, err)
	}
}

// TestMemoryBound: a million distinct values do not grow a rule's state
// beyond k per sketch.
func TestMemoryBound(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	const k = 32
	r := newTestRecorder(t, Settings{TopK: k}, clk)
	rule := match(t, s, ip("x"))
	var buf [4]byte
	record := func(n, base int) {
		for i := range n {
			v := base + i
			buf[0], buf[1], buf[2], buf[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
			r.Record(rule, ip(fmt.Sprintf("%d.%d.%d.%d", buf[0], buf[1], buf[2], buf[3])), Outcome(i%2*2), 1, nil)
		}
	}
	record(100_000, 0)
	r.tick(context.Background(), t0.Add(time.Minute))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for m := range 9 {
		record(100_000, (m+1)*100_000)
		r.tick(context.Background(), t0.Add(time.Duration(m+2)*time.Minute))
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := int64(after.HeapAlloc) - int64(before.HeapAlloc); grew > 4<<20 {
		t.Errorf("heap grew by %d bytes over 900k more distinct values", grew)
	}
	rs := r.byID[ruleID{"edge", rule.Path}]
	for i := range rs.shards {
		h := rs.shards[i].h
		if len(h.ref.idx) > k || len(h.adm.idx) > k || cap(h.ref.slots) > k {
			t.Errorf("shard %d: %d/%d tracked, cap %d", i, len(h.ref.idx), len(h.adm.idx), cap(h.ref.slots))
		}
	}
	for _, rg := range []*ring{&rs.minutes, &rs.tens, &rs.twoHours, &rs.days} {
		for _, b := range rg.b {
			if len(b.ref.Entries) > k || len(b.adm.Entries) > k {
				t.Errorf("bucket %d: %d/%d entries", b.start, len(b.ref.Entries), len(b.adm.Entries))
			}
		}
	}
}

// TestMaxRules: rules beyond max_rules are not tracked.
func TestMaxRules(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{MaxRules: 1}, clk)
	r.Record(match(t, s, ip("a")), ip("a"), Refused, 1, nil)
	d := descriptor.Descriptor{{Key: "global", Value: "all"}}
	r.Record(match(t, s, d), d, Refused, 1, nil)
	r.Record(match(t, s, d), d, Refused, 1, nil) // cached as dropped
	if len(r.byID) != 1 || r.dropped.Load() != 1 {
		t.Errorf("%d rules tracked, %d dropped; want 1 and 1", len(r.byID), r.dropped.Load())
	}
}

// TestWindows: a value recorded now is in every window; after 7 minutes
// no longer in 5m; after 2 hours no longer in 1h; after 2 days not in
// 24h; after 9 days in none.
func TestWindows(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{}, clk)
	rule := match(t, s, ip("x"))
	for range 5 {
		r.Record(rule, ip("203.0.113.9"), Refused, 2, nil)
	}
	in := func(at time.Duration, window string) bool {
		clk.set(t0.Add(at))
		r.tick(context.Background(), t0.Add(at))
		a := offenders(t, r, window)
		for _, o := range a.Offenders {
			if o.Value == "203.0.113.9" {
				if o.Refused != 10 {
					t.Errorf("at +%v %s: refused %d, want 10", at, window, o.Refused)
				}
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		at     time.Duration
		window string
		want   bool
	}{
		{0, "5m", true}, {0, "1h", true}, {0, "24h", true}, {0, "7d", true},
		{4 * time.Minute, "5m", true}, {7 * time.Minute, "5m", false}, {7 * time.Minute, "1h", true},
		{2 * time.Hour, "1h", false}, {2 * time.Hour, "24h", true},
		{50 * time.Hour, "24h", false}, {50 * time.Hour, "7d", true},
		{9 * 24 * time.Hour, "7d", false},
	} {
		if got := in(tc.at, tc.window); got != tc.want {
			t.Errorf("at +%v window %s: listed %v, want %v", tc.at, tc.window, got, tc.want)
		}
	}
}

// TestRulesAndHistory: rates, totals and the roll-ups by hour and day.
func TestRulesAndHistory(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{}, clk)
	rule := match(t, s, ip("x"))
	rec := func(o Outcome, n int) {
		for range n {
			r.Record(rule, ip("198.51.100.1"), o, 1, nil)
		}
	}
	rec(Admitted, 60)
	rec(NearLimit, 6)
	rec(Refused, 30)
	rec(Shadow, 3)
	ra, err := r.Rules(context.Background())
	if err != nil || len(ra.Rules) != 1 {
		t.Fatalf("rules %+v, %v", ra, err)
	}
	got := ra.Rules[0]
	if want := (Counts{Admitted: 69, Refused: 30, NearLimit: 6, Shadow: 3}); got.Totals != want {
		t.Errorf("totals %+v, want %+v", got.Totals, want)
	}
	if got.Rate1m.Refused != 0.5 || got.Rate5m.Refused != 0.1 {
		t.Errorf("rates %+v %+v, want refused 0.5/s and 0.1/s", got.Rate1m, got.Rate5m)
	}
	// A day later: yesterday's roll-up and top offender are history.
	next := t0.Add(24 * time.Hour)
	clk.set(next)
	r.tick(context.Background(), next)
	rec(Refused, 1)
	h, err := r.History(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Days) != 2 || h.Days[0].Date != "2026-11-30" || h.Days[1].Date != "2026-12-01" {
		t.Fatalf("days %+v", h.Days)
	}
	d0 := h.Days[0]
	if len(d0.Rules) != 1 || d0.Rules[0].Refused != 30 || d0.Rules[0].Admitted != 69 {
		t.Errorf("yesterday %+v", d0)
	}
	if len(d0.TopOffenders) != 1 || d0.TopOffenders[0].Value != "198.51.100.1" || d0.TopOffenders[0].Refused != 30 {
		t.Errorf("yesterday's top %+v", d0.TopOffenders)
	}
	if len(h.Hours) != 48 {
		t.Errorf("%d hours, want 48", len(h.Hours))
	}
	var hourRefused int64
	for _, hr := range h.Hours {
		for _, rc := range hr.Rules {
			hourRefused += rc.Refused
		}
	}
	if hourRefused != 31 {
		t.Errorf("refused by hour sum to %d, want 31", hourRefused)
	}
}

func TestHandler(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{}, clk)
	r.Record(match(t, s, ip("x")), ip("203.0.113.1"), Refused, 1, nil)
	h := r.Handler()
	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/api/v1/rules", 200, `"rate_1m":`},
		{"/api/v1/offenders", 200, `"window":"5m"`},
		{"/api/v1/offenders?window=1h&limit=5&domain=edge", 200, `"value":"203.0.113.1"`},
		{"/api/v1/offenders?domain=other", 200, `"offenders":[]`},
		{"/api/v1/offenders?window=2h", 400, `want 5m, 1h, 24h or 7d`},
		{"/api/v1/offenders?limit=0", 400, `from 1 to 100`},
		{"/api/v1/offenders?limit=101", 400, `from 1 to 100`},
		{"/api/v1/offenders/detail?value=203.0.113.1", 200, `"refused":1`},
		{"/api/v1/offenders/detail", 400, `value: required`},
		{"/api/v1/history", 200, `"retention_days":35`},
		{"/api/v1/history?days=36", 400, `from 1 to 35`},
		{"/api/v1/nope", 404, `no such API`},
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tc.path, nil))
		if w.Code != tc.code || !strings.Contains(w.Body.String(), tc.want) {
			t.Errorf("GET %s = %d %s, want %d containing %s", tc.path, w.Code, w.Body, tc.code, tc.want)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json; charset=utf-8" {
			t.Errorf("GET %s: Content-Type %q", tc.path, ct)
		}
	}
}

func TestSettingsValidate(t *testing.T) {
	if err := (Settings{}).Validate(); err != nil {
		t.Errorf("zero settings: %v", err)
	}
	err := Settings{TopK: -1, MaxRules: 1 << 20, FlushInterval: time.Millisecond, Retention: time.Hour}.Validate()
	for _, p := range []string{"top_k", "max_rules", "flush_interval", "retention"} {
		if err == nil || !strings.Contains(err.Error(), p+": ") {
			t.Errorf("error %v does not name %s", err, p)
		}
	}
}

// BenchmarkRecord records from 64 goroutines per P: "tracked" cycles
// through 32 clients (all tracked: the common case of a few heavy
// clients), "churn" through 4096 (every value new to the sketch: the
// flood worst case).
func BenchmarkRecord(b *testing.B) {
	for _, bc := range []struct {
		name    string
		clients int
	}{{"tracked", 32}, {"churn", 4096}} {
		b.Run(bc.name, func(b *testing.B) {
			s := testSet(b)
			clk := &fakeClock{t: t0}
			r := newTestRecorder(b, Settings{}, clk)
			rule := match(b, s, ip("x"))
			vals := make([]descriptor.Descriptor, bc.clients)
			for i := range vals {
				vals[i] = ip(fmt.Sprintf("10.1.%d.%d", i/256, i%256))
			}
			b.ReportAllocs()
			b.SetParallelism(64)
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					r.Record(rule, vals[i%len(vals)], Outcome(i%3), 1, nil)
					i++
				}
			})
		})
	}
}

// TestConcurrent records from many goroutines while the clock ticks and
// queries drain (run with -race); no decision is lost.
func TestConcurrent(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{TopK: 8}, clk)
	rule := match(t, s, ip("x"))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				r.Record(rule, ip(fmt.Sprintf("10.0.%d.%d", g, i%50)), Outcome(i%4), 1, nil)
			}
		})
	}
	wg.Go(func() {
		for i := range 50 {
			now := t0.Add(time.Duration(i) * 10 * time.Second)
			clk.set(now)
			r.tick(context.Background(), now)
			if _, err := r.Offenders(context.Background(), OffendersQuery{}); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	ra, err := r.Rules(context.Background())
	if err != nil || len(ra.Rules) != 1 {
		t.Fatalf("%+v %v", ra, err)
	}
	tot := ra.Rules[0].Totals
	if tot.Admitted+tot.Refused != 16000 || tot.Refused != 4000 || tot.Shadow != 4000 {
		t.Errorf("totals %+v, want 16000 decisions, 4000 refused, 4000 shadow", tot)
	}
}

// TestRecordNoAlloc: recording a value already tracked allocates nothing,
// also for an API key hashed on the way.
func TestRecordNoAlloc(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{}, clk)
	for _, d := range []descriptor.Descriptor{
		ip("203.0.113.7"),
		{{Key: "api_key", Value: "sk-raw"}},
		{{Key: "path", Value: "/api/x"}, {Key: "user", Value: "bob"}},
	} {
		rule := match(t, s, d)
		for o := range numOutcomes {
			r.Record(rule, d, o, 1, nil) // tracked in every shard's sketches
		}
		for range 64 {
			r.Record(rule, d, Refused, 1, nil)
			r.Record(rule, d, Admitted, 1, nil)
		}
		if n := testing.AllocsPerRun(1000, func() { r.Record(rule, d, Refused, 1, nil) }); n != 0 {
			t.Errorf("%v: %v allocations per Record, want 0", d, n)
		}
	}
}

// TestOverrideRules: Envoy's limit overrides build their Rule per request;
// they are tracked by name (one state per domain), all entries shown.
func TestOverrideRules(t *testing.T) {
	s := testSet(t)
	clk := &fakeClock{t: t0}
	r := newTestRecorder(t, Settings{}, clk)
	d := descriptor.Descriptor{{Key: "tenant", Value: "acme"}, {Key: "user", Value: "bob"}}
	for range 3 {
		o, ok := s.Override("edge", descriptor.UnitMinute, 10)
		if !ok {
			t.Fatal("no override rule")
		}
		r.Record(&o, d, Refused, 1, nil)
	}
	if len(r.byID) != 1 {
		t.Errorf("%d states, want 1", len(r.byID))
	}
	a := offenders(t, r, "5m")
	if len(a.Offenders) != 1 || a.Offenders[0].Value != "tenant=acme user=bob" || a.Offenders[0].Refused != 3 {
		t.Errorf("offenders %+v", a.Offenders)
	}
}
