package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/backends/redisstore/internal/pipe"
	"github.com/extauthz/extauthz/pkg/limiter"
)

func take(t *testing.T, s *Store, mode limiter.Mode, reqs ...limiter.Request) []limiter.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := make([]limiter.Result, len(reqs))
	if err := s.Take(ctx, mode, reqs, res); err != nil {
		t.Fatalf("Take(%v): %v", reqs, err)
	}
	return res
}

func commandCalls(t *testing.T, srv interface {
	CommandStats(context.Context) (map[string]int64, error)
}, names ...string) map[string]int64 {
	t.Helper()
	stats, err := srv.CommandStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]int64, len(names))
	for _, n := range names {
		out[n] = stats[n]
	}
	return out
}

// TestServerTimeAndTTL checks the production path (the script reads TIME)
// and that every key expires when its state stops mattering.
func TestServerTimeAndTTL(t *testing.T) {
	s, srv := newStandalone(t, Options{})
	rdb := srv.Client(t)
	ctx := context.Background()
	tests := []struct {
		name  string
		limit limiter.Limit
		// ttl returns the key's expected TTL given the last result.
		ttl func(r limiter.Result, p time.Duration) time.Duration
	}{
		{name: "fixed window: end of the window", limit: limiter.Limit{Requests: 3, Period: time.Hour},
			ttl: func(r limiter.Result, p time.Duration) time.Duration { return r.ResetAfter }},
		{name: "sliding window: end of the next window", limit: limiter.Limit{Requests: 3, Period: time.Hour, Algorithm: limiter.SlidingWindow},
			ttl: func(r limiter.Result, p time.Duration) time.Duration { return r.ResetAfter }},
		{name: "token bucket: the TAT", limit: limiter.Limit{Requests: 3, Period: time.Hour, Algorithm: limiter.TokenBucket},
			ttl: func(r limiter.Result, p time.Duration) time.Duration { return r.ResetAfter }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := "ttl/" + tc.limit.Algorithm.String()
			var last limiter.Result
			for i := range 3 {
				last = take(t, s, limiter.CountAll, limiter.Request{Key: key, Limit: tc.limit, Hits: 1})[0]
				if !last.Allowed || last.Remaining != int64(2-i) {
					t.Fatalf("hit %d: got %+v, want allowed with %d remaining", i+1, last, 2-i)
				}
			}
			refused := take(t, s, limiter.CountAll, limiter.Request{Key: key, Limit: tc.limit, Hits: 1})[0]
			if refused.Allowed || refused.RetryAfter <= 0 || refused.RetryAfter > 2*tc.limit.Period {
				t.Fatalf("4th hit: got %+v, want refused with 0 < RetryAfter <= 2P", refused)
			}
			if tc.limit.Algorithm == limiter.FixedWindow {
				// The server clock and ours agree to well within a second.
				want := time.Duration(int64(tc.limit.Period) - time.Now().UnixNano()%int64(tc.limit.Period))
				if d := refused.RetryAfter - want; d > time.Second || d < -time.Second {
					t.Errorf("fixed window RetryAfter: got %v, want about %v (end of the hour)", refused.RetryAfter, want)
				}
			}
			pttl, err := rdb.PTTL(ctx, Key("", key)).Result()
			if err != nil {
				t.Fatal(err)
			}
			want := tc.ttl(last, tc.limit.Period)
			// PTTL is rounded up to a millisecond when set and has run down
			// a little since; and SET ... PX counts from Redis's cached
			// millisecond clock, which can be a millisecond ahead of the
			// TIME the script read (never behind: 0 of 20 000 calls on
			// Redis 7.0, 58 ahead), so a key may outlive its state by up
			// to 2ms but never expires before it ends.
			if pttl <= 0 || pttl > want+2*time.Millisecond || pttl < want-2*time.Second {
				t.Errorf("PTTL: got %v, want about %v and never more", pttl, want)
			}
		})
	}
}

// TestOneRoundTripPerTake counts commands: a call with many keys is one
// EVALSHA, whatever the algorithms.
func TestOneRoundTripPerTake(t *testing.T) {
	s, srv := newStandalone(t, Options{})
	var calls atomic.Int64
	s.opts.OnCall = func(time.Duration, error) { calls.Add(1) }
	reqs := []limiter.Request{
		{Key: "a", Limit: limiter.Limit{Requests: 10, Period: time.Minute}, Hits: 1},
		{Key: "b", Limit: limiter.Limit{Requests: 10, Period: time.Minute, Algorithm: limiter.SlidingWindow}, Hits: 1},
		{Key: "c", Limit: limiter.Limit{Requests: 10, Period: time.Minute, Algorithm: limiter.TokenBucket}, Hits: 1},
		{Key: "a", Limit: limiter.Limit{Requests: 10, Period: time.Minute}, Hits: 2},
		{Key: "d", Limit: limiter.Limit{Requests: 10, Period: time.Hour}, Hits: 0},
	}
	if err := s.LoadScript(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := commandCalls(t, srv, "evalsha", "eval", "get", "set")
	const takes = 20
	for range takes {
		take(t, s, limiter.CountAll, reqs...)
	}
	after := commandCalls(t, srv, "evalsha", "eval", "get", "set")
	if got := after["evalsha"] - before["evalsha"]; got != takes {
		t.Errorf("EVALSHA calls: got %d, want %d (one per Take)", got, takes)
	}
	if got := after["eval"] - before["eval"]; got != 0 {
		t.Errorf("EVAL calls: got %d, want 0", got)
	}
	// Inside the script: one GET per distinct key, one SET per written key.
	if got := after["get"] - before["get"]; got != 4*takes {
		t.Errorf("GET calls inside the script: got %d, want %d", got, 4*takes)
	}
	if got := calls.Load(); got != takes {
		t.Errorf("OnCall calls: got %d, want %d", got, takes)
	}
}

// TestNoScriptRecovery flushes the script cache between calls: the next
// call reloads the script transparently, once; with and without auto
// pipelining (the default of extauthz's config).
func TestNoScriptRecovery(t *testing.T) {
	for _, ap := range []bool{false, true} {
		t.Run(fmt.Sprintf("auto_pipeline=%v", ap), func(t *testing.T) { testNoScriptRecovery(t, ap) })
	}
}

func testNoScriptRecovery(t *testing.T, autoPipeline bool) {
	var reloads atomic.Int64
	srv := redistest.Start(t, redistest.Options{})
	s, err := Open(Config{URL: URL(srv.URL()), AutoPipeline: new(autoPipeline)}, Options{OnScriptLoad: func() { reloads.Add(1) }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if autoPipeline && !s.BoundCalls(time.Second) { // the retry keeps within what the first call left
		t.Fatal("BoundCalls = false with the pipeline")
	}
	rdb := srv.Client(t)
	ctx := context.Background()
	l := limiter.Limit{Requests: 5, Period: time.Hour}
	if r := take(t, s, limiter.CountAll, limiter.Request{Key: "k", Limit: l, Hits: 1})[0]; !r.Allowed || r.Remaining != 4 {
		t.Fatalf("first call: got %+v, want allowed with 4 remaining", r)
	}
	if got := reloads.Load(); got != 1 {
		t.Errorf("reloads after the first call on a fresh server: got %d, want 1", got)
	}
	for i := range 3 {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		r := take(t, s, limiter.CountAll, limiter.Request{Key: "k", Limit: l, Hits: 1})[0]
		if want := int64(3 - i); !r.Allowed || r.Remaining != want {
			t.Fatalf("call after SCRIPT FLUSH %d: got %+v, want allowed with %d remaining", i+1, r, want)
		}
		if got, want := reloads.Load(), int64(i+2); got != want {
			t.Errorf("reloads after flush %d: got %d, want %d", i+1, got, want)
		}
		// The script is cached again: the next call is a plain EVALSHA.
		take(t, s, limiter.CountAll, limiter.Request{Key: "other", Limit: l, Hits: 1})
		if got, want := reloads.Load(), int64(i+2); got != want {
			t.Errorf("reloads after a normal call: got %d, want %d", got, want)
		}
	}
}

// TestLocalCache covers the over-limit cache on and off.
func TestLocalCache(t *testing.T) {
	l := limiter.Limit{Requests: 2, Period: time.Minute}
	req := limiter.Request{Key: "hot", Limit: l, Hits: 1}
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		t.Run(name, func(t *testing.T) {
			clock := newFakeClock(time.Unix(1_700_000_080, 0)) // 20s before a minute boundary
			var roundTrips, cacheHits atomic.Int64
			opts := Options{
				Now: clock.Now, ExtraTTL: time.Hour,
				OnCall:     func(time.Duration, error) { roundTrips.Add(1) },
				OnCacheHit: func(n int) { cacheHits.Add(int64(n)) },
			}
			if on {
				opts.LocalCacheSize = 100
			}
			s, _ := newStandalone(t, opts)
			take(t, s, limiter.CountAll, req, req) // fills the window
			first := take(t, s, limiter.CountAll, req)[0]
			want := limiter.Result{Limit: 2, ResetAfter: 20 * time.Second, RetryAfter: 20 * time.Second}
			if first != want {
				t.Fatalf("refused call: got %+v, want %+v", first, want)
			}
			clock.Advance(5 * time.Second)
			trips := roundTrips.Load()
			for range 10 {
				got := take(t, s, limiter.CountAll, req)[0]
				want := limiter.Result{Limit: 2, ResetAfter: 15 * time.Second, RetryAfter: 15 * time.Second}
				if got != want {
					t.Fatalf("refused again: got %+v, want %+v", got, want)
				}
			}
			wantTrips, wantHits := trips+10, int64(0)
			if on {
				wantTrips, wantHits = trips, 10
			}
			if got := roundTrips.Load(); got != wantTrips {
				t.Errorf("round trips: got %d, want %d", got, wantTrips)
			}
			if got := cacheHits.Load(); got != wantHits {
				t.Errorf("cache hits: got %d, want %d", got, wantHits)
			}
			// A read is never answered by the cache.
			read := take(t, s, limiter.CountAll, limiter.Request{Key: "hot", Limit: l})[0]
			if read.Allowed || read.Remaining != 0 {
				t.Errorf("read of the over-limit key: got %+v, want refused (count above the limit)", read)
			}
			// CountIfAllAllowed with a cached refusal counts nothing, also
			// not on the other key.
			other := limiter.Request{Key: "other", Limit: l, Hits: 1}
			res := take(t, s, limiter.CountIfAllAllowed, other, req)
			if !res[0].Allowed || res[1].Allowed || res[0].Remaining != 2 {
				t.Errorf("CountIfAllAllowed with a refused key: got %+v, want [allowed, not counted (2 remaining); refused]", res)
			}
			// The next window admits again, through Redis.
			clock.Advance(15 * time.Second)
			trips = roundTrips.Load()
			if got := take(t, s, limiter.CountAll, req)[0]; !got.Allowed || got.Remaining != 1 {
				t.Errorf("next window: got %+v, want allowed with 1 remaining", got)
			}
			if got := roundTrips.Load(); got != trips+1 {
				t.Errorf("round trips in the next window: got %d, want %d", got-trips, 1)
			}
		})
	}
}

func TestLocalCacheIsBounded(t *testing.T) {
	c := newOverCache(64)
	now := time.Unix(1_700_000_000, 0)
	l := limiter.Limit{Requests: 1, Period: time.Minute}
	buf := []byte("key-0000")
	for i := range 10_000 {
		buf[4], buf[5], buf[6], buf[7] = byte('0'+i/1000%10), byte('0'+i/100%10), byte('0'+i/10%10), byte('0'+i%10)
		r := limiter.Request{Key: string(buf), Limit: l, Hits: 1}
		c.put(&r, now, time.Minute, time.Minute)
	}
	if got := c.len(); got > 64 {
		t.Errorf("entries after 10000 puts into a cache of 64: got %d", got)
	}
	// An entry is used only for the limit it was refused under, and only
	// until it expires.
	r := limiter.Request{Key: "k", Limit: l, Hits: 1}
	c.put(&r, now, time.Second, time.Minute)
	var res limiter.Result
	if !c.get(&r, now.Add(999*time.Millisecond), &res) || res.RetryAfter != time.Millisecond || res.ResetAfter != time.Minute-999*time.Millisecond {
		t.Errorf("get before expiry: got %+v, want a refusal with RetryAfter 1ms", res)
	}
	other := r
	other.Limit.Requests = 2
	if c.get(&other, now, &res) {
		t.Error("get under another limit: got a cached refusal, want none")
	}
	if c.get(&r, now.Add(time.Second), &res) {
		t.Error("get at expiry: got a cached refusal, want none")
	}
}

// TestKeysWithBraces: braces in descriptor values change neither the
// counters' identity nor their slot choice.
func TestKeysWithBraces(t *testing.T) {
	s, srv := newStandalone(t, Options{Prefix: "t:"})
	l := limiter.Limit{Requests: 1, Period: time.Hour}
	keys := []string{"{a}", "{a}b", "x{a}", "a_b" + "c", "a" + "b_c", "{}", "}{", "{{a}}"}
	for _, k := range keys {
		if r := take(t, s, limiter.CountAll, limiter.Request{Key: k, Limit: l, Hits: 1})[0]; !r.Allowed {
			t.Errorf("first hit on %q: got %+v, want allowed (a fresh counter)", k, r)
		}
	}
	n, err := srv.Client(t).DBSize(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(len(keys)) {
		t.Errorf("keys in Redis: got %d, want %d", n, len(keys))
	}
	slots := map[uint16]bool{}
	for _, k := range []string{"{a}", "{a}b", "x{a}", "{a}c"} {
		slots[Slot(k)] = true
	}
	if len(slots) < 3 {
		t.Errorf("slots of 4 keys sharing the brace text {a}: got %d distinct, want them spread", len(slots))
	}
}

func TestKeyLayout(t *testing.T) {
	tests := []struct {
		prefix, key, want string
	}{
		{prefix: "", key: "f4:edge", want: "extauthz:{" + hexTag("f4:edge") + "}f4:edge"},
		{prefix: "rl:", key: "{x}", want: "rl:{" + hexTag("{x}") + "}{x}"},
		{prefix: "rl:", key: "", want: "rl:{811c9dc5}"},
	}
	for _, tc := range tests {
		if got := Key(tc.prefix, tc.key); got != tc.want {
			t.Errorf("Key(%q, %q): got %q, want %q", tc.prefix, tc.key, got, tc.want)
		}
	}
	// CRC-16/XMODEM check value, and Redis Cluster's own example.
	if got := crc16([]byte("123456789")); got != 0x31c3 {
		t.Errorf("crc16(123456789): got %#x, want 0x31c3", got)
	}
}

func hexTag(k string) string { return string(appendTag(nil, k)) }

func TestNewValidates(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "braces in prefix", opts: Options{Prefix: "a{"}, wantErr: "contains '{' or '}'"},
		{name: "negative cache", opts: Options{LocalCacheSize: -1}, wantErr: "local cache size -1 is negative"},
		{name: "negative extra TTL", opts: Options{ExtraTTL: -time.Second}, wantErr: "extra TTL -1s is negative"},
	}
	for _, tc := range tests {
		if _, err := New(client, tc.opts); err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: New error: got %v, want %q", tc.name, err, tc.wantErr)
		}
	}
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New(nil client): got nil error, want one")
	}
}

func TestTakeRejects(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	s, err := New(client, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tests := []struct {
		name string
		req  limiter.Request
		want error
	}{
		{name: "sub-microsecond period", req: limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1, Period: 999}, Hits: 1}, want: limiter.ErrInvalidLimit},
		{name: "requests beyond 2^53", req: limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1 << 53, Period: time.Second}, Hits: 1}, want: limiter.ErrInvalidLimit},
		{name: "hits beyond 2^53", req: limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1, Period: time.Second}, Hits: 1 << 53}, want: limiter.ErrInvalidRequest},
		{name: "negative hits", req: limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1, Period: time.Second}, Hits: -1}, want: limiter.ErrInvalidRequest},
		{name: "invalid limit", req: limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1}, Hits: 1}, want: limiter.ErrInvalidLimit},
	}
	for _, tc := range tests {
		err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{tc.req}, make([]limiter.Result, 1))
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want an error wrapping %v", tc.name, err, tc.want)
		}
		if got := ErrorKind(err); got != KindInvalid {
			t.Errorf("%s: ErrorKind: got %q, want %q", tc.name, got, KindInvalid)
		}
	}
}

// TestDeadlineBeatsReadTimeout: against a hung server, concurrent calls
// return at their context deadline (the chain's call_timeout), not at the
// far longer socket read timeout, also when auto pipelining queues them
// behind a stalled batch, and also when the bound is the store's own
// (BoundCalls, which only the pipeline offers) rather than the context's.
func TestDeadlineBeatsReadTimeout(t *testing.T) {
	const bound = 30 * time.Millisecond
	for _, tc := range []struct {
		autoPipeline, selfBound bool
	}{{false, false}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("auto_pipeline=%v,self_bound=%v", tc.autoPipeline, tc.selfBound), func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			s, err := Open(Config{URL: URL(srv.URL()), Timeouts: Timeouts{Read: 3 * time.Second}, AutoPipeline: new(tc.autoPipeline)}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.BoundCalls(bound); got != tc.autoPipeline {
				t.Fatalf("BoundCalls = %v, want %v (the pipeline's)", got, tc.autoPipeline)
			}
			if !tc.selfBound {
				s.BoundCalls(0)
			}
			l := limiter.Limit{Requests: 100, Period: time.Hour}
			if err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: "warm", Limit: l, Hits: 1}}, make([]limiter.Result, 1)); err != nil {
				t.Fatal(err)
			}
			if err := srv.Pause(); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = srv.Resume() }()
			const calls = 8
			errs := make(chan error, calls)
			took := make(chan time.Duration, calls)
			for i := range calls {
				go func() {
					ctx := context.Background()
					if !tc.selfBound {
						var cancel context.CancelFunc
						ctx, cancel = context.WithTimeout(ctx, bound)
						defer cancel()
					}
					start := time.Now()
					errs <- s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: fmt.Sprint("k", i), Limit: l, Hits: 1}}, make([]limiter.Result, 1))
					took <- time.Since(start)
				}()
			}
			for range calls {
				// go-redis reports its socket's timeout, the pipeline the deadline.
				if err := <-errs; ErrorKind(err) != KindTimeout || tc.autoPipeline && !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("got %v (kind %q), want kind %q", err, ErrorKind(err), KindTimeout)
				}
				if d := <-took; d < bound || d > time.Second {
					t.Errorf("a call took %v: want about its %v bound, far below the 3s read timeout", d, bound)
				}
			}
		})
	}
}

// TestErrors checks what a dead, a hung and a misbehaving Redis return,
// with and without auto pipelining.
func TestErrors(t *testing.T) {
	for _, ap := range []bool{false, true} {
		t.Run(fmt.Sprintf("auto_pipeline=%v", ap), func(t *testing.T) { testErrors(t, ap) })
	}
}

func testErrors(t *testing.T, autoPipeline bool) {
	srv := redistest.Start(t, redistest.Options{})
	var sawErr atomic.Bool
	s, err := Open(Config{URL: URL(srv.URL()), Timeouts: Timeouts{Read: 50 * time.Millisecond}, AutoPipeline: new(autoPipeline)}, Options{
		OnCall: func(_ time.Duration, err error) {
			if err != nil {
				sawErr.Store(true)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	l := limiter.Limit{Requests: 1, Period: time.Hour}
	do := func(ctx context.Context) error {
		return s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: "k", Limit: l, Hits: 1}}, make([]limiter.Result, 1))
	}
	ctx := context.Background()

	// A key of the wrong type makes the script fail.
	if err := srv.Client(t).HSet(ctx, Key("", "k"), "f", "v").Err(); err != nil {
		t.Fatal(err)
	}
	if err := do(ctx); ErrorKind(err) != KindScript {
		t.Errorf("wrong key type: got %v (kind %q), want kind %q", err, ErrorKind(err), KindScript)
	}
	srv.Client(t).Del(ctx, Key("", "k"))

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := do(cctx); ErrorKind(err) != KindCanceled {
		t.Errorf("cancelled context: got %v (kind %q), want kind %q", err, ErrorKind(err), KindCanceled)
	}

	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = do(ctx)
	if ErrorKind(err) != KindTimeout {
		t.Errorf("paused server: got %v (kind %q), want kind %q", err, ErrorKind(err), KindTimeout)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("paused server: Take took %v, want about the 50ms read timeout", d)
	}
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Millisecond)
	start = time.Now()
	err = do(dctx)
	dcancel()
	if ErrorKind(err) != KindTimeout || time.Since(start) > 500*time.Millisecond {
		t.Errorf("paused server, 20ms deadline: got %v (kind %q) after %v, want a timeout near 20ms", err, ErrorKind(err), time.Since(start))
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}

	srv.Kill()
	if err := do(ctx); ErrorKind(err) != KindConnection {
		t.Errorf("killed server: got %v (kind %q), want kind %q", err, ErrorKind(err), KindConnection)
	}
	if err := s.Ping(ctx); err == nil {
		t.Error("Ping of a killed server: got nil error")
	}
	if !sawErr.Load() {
		t.Error("OnCall never saw an error")
	}
	srv.Restart(t)
	// The pool notices the dead connections; within a few calls the store
	// serves again.
	var lastTakeErr error
	for range 20 {
		if lastTakeErr = do(ctx); lastTakeErr == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if lastTakeErr != nil {
		t.Errorf("after restart: %v", lastTakeErr)
	}
}

func TestErrorKind(t *testing.T) {
	// OnCall classifies every call's error: a success must cost nothing.
	if n := testing.AllocsPerRun(100, func() { _ = ErrorKind(nil) }); n != 0 {
		t.Errorf("ErrorKind(nil) allocates %v times, want 0", n)
	}
	tests := []struct {
		err  error
		want string
	}{
		{err: nil, want: KindNone},
		{err: context.Canceled, want: KindCanceled},
		{err: context.DeadlineExceeded, want: KindTimeout},
		{err: redis.ErrPoolTimeout, want: KindTimeout},
		{err: ErrBadReply, want: KindReply},
		{err: redis.ErrClosed, want: KindConnection},
		{err: fmt.Errorf("%w: %w", pipe.ErrNotSent, pipe.ErrClosed), want: KindConnection},
		{err: fmt.Errorf("%w: bad line", pipe.ErrProtocol), want: KindConnection},
		{err: fmt.Errorf("%w: an array", pipe.ErrUnexpected), want: KindReply},
		{err: pipe.Error("NOSCRIPT No matching script"), want: KindScript},
		{err: fmt.Errorf("%w: setup auth: %w", pipe.ErrNotSent, pipe.Error("WRONGPASS invalid username-password pair")), want: KindConnection},
		{err: pipe.Error("READONLY You can't write against a read only replica."), want: KindServer},
		{err: errors.New("boom"), want: KindOther},
	}
	for _, tc := range tests {
		if got := ErrorKind(tc.err); got != tc.want {
			t.Errorf("ErrorKind(%v): got %q, want %q", tc.err, got, tc.want)
		}
	}
}
