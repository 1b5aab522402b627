package redisstore

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/limiter"
)

var (
	luaCalls = flag.Int("lua.calls", 4000, "calls of TestScriptMatchesLimiter")
	luaSeed  = flag.Uint64("lua.seed", 1, "random seed of TestScriptMatchesLimiter")
)

// TestScriptMatchesLimiter drives the Lua script and the pure Go algorithms
// (limiter.ApplyAll) through the same random calls on a fake clock and
// requires identical results: the script mirrors pkg/limiter exactly,
// window edges, sub-microsecond clocks, duplicate keys and both modes
// included.
func TestScriptMatchesLimiter(t *testing.T) {
	clock := newFakeClock(time.Unix(1_700_000_000, 123_456_789))
	s, _ := newStandalone(t, Options{Now: clock.Now, ExtraTTL: time.Hour})
	matchLimiter(t, s, clock, *luaCalls, "")
}

// TestOneKeyScriptsMatchLimiter: the one-request scripts (take_fixed.lua,
// take_sliding.lua, take_bucket.lua), which Take uses for calls of one
// request, give pkg/limiter's results too: every call has one request.
func TestOneKeyScriptsMatchLimiter(t *testing.T) {
	clock := newFakeClock(time.Unix(1_700_000_000, 123_456_789))
	s, _ := newStandalone(t, Options{Now: clock.Now, ExtraTTL: time.Hour})
	shas := &shaCounter{calls: map[string]int{}}
	s.client.AddHook(shas)
	matchLimiterKeys(t, s, clock, *luaCalls, "", 1)
	// Each algorithm's script served its calls (take.lua would give the
	// same results): at least a fifth of the calls each, and take.lua none.
	for a, sc := range oneScripts {
		if got := shas.count(sc.Hash()); got < *luaCalls/5 {
			t.Errorf("%s: %d calls of its script, want at least %d", limiter.Algorithm(a), got, *luaCalls/5)
		}
	}
	if got := shas.count(takeScript.Hash()); got != 0 {
		t.Errorf("take.lua: %d calls, want 0 for calls of one request", got)
	}
}

// shaCounter is a go-redis hook that counts EVALSHA calls by SHA.
type shaCounter struct {
	mu    sync.Mutex
	calls map[string]int
}

func (h *shaCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *shaCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); len(args) > 1 && cmd.Name() == "evalsha" {
			sha, _ := args[1].(string)
			h.mu.Lock()
			h.calls[sha]++
			h.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (h *shaCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *shaCounter) count(sha string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[sha]
}

// matchLimiter makes calls random calls of 1 to 4 requests on s and on the
// pure algorithms, and compares the results. Key names start with prefix.
func matchLimiter(t *testing.T, s *Store, clock *fakeClock, calls int, prefix string) {
	t.Helper()
	matchLimiterKeys(t, s, clock, calls, prefix, 4)
}

// matchLimiterKeys is matchLimiter with calls of 1 to maxKeys requests.
func matchLimiterKeys(t *testing.T, s *Store, clock *fakeClock, calls int, prefix string, maxKeys int) {
	t.Helper()
	ctx := context.Background()

	limits := []limiter.Limit{
		{Requests: 5, Period: time.Second},
		{Requests: 3, Period: 100 * time.Millisecond, Algorithm: limiter.SlidingWindow},
		{Requests: 7, Period: time.Minute, Algorithm: limiter.SlidingWindow},
		{Requests: 3, Period: time.Second, Algorithm: limiter.TokenBucket},
		{Requests: 10, Period: time.Minute, Burst: 4, Algorithm: limiter.TokenBucket},
		{Requests: 0, Period: time.Second},
		{Requests: 0, Period: time.Second, Algorithm: limiter.SlidingWindow},
		{Requests: 0, Period: time.Second, Algorithm: limiter.TokenBucket},
		{Requests: 4, Period: 7*time.Millisecond + 3, Algorithm: limiter.FixedWindow},       // not whole µs
		{Requests: 4, Period: 7*time.Millisecond + 3, Algorithm: limiter.SlidingWindow},     // not whole µs
		{Requests: 7, Period: 999_999_999, Algorithm: limiter.TokenBucket},                  // T not whole ns
		{Requests: 1_000_000, Period: 24 * time.Hour, Algorithm: limiter.SlidingWindow},     // products > 2^53
		{Requests: 100_000, Period: 30 * 24 * time.Hour, Algorithm: limiter.TokenBucket},    // month
		{Requests: 1000, Period: 30 * 24 * time.Hour, Algorithm: limiter.FixedWindow},       // month
		{Requests: 1000, Period: 365 * 24 * time.Hour, Algorithm: limiter.FixedWindow},      // year
		{Requests: 2, Period: time.Microsecond, Algorithm: limiter.FixedWindow},             // shortest
		{Requests: 1, Period: time.Hour, Burst: 3, Algorithm: limiter.TokenBucket},          // burst > R
		{Requests: 9_000_000_000, Period: time.Hour, Algorithm: limiter.SlidingWindow},      // huge R
		{Requests: 12, Period: 3 * time.Second, Burst: 1, Algorithm: limiter.TokenBucket},   // burst < R
		{Requests: 50, Period: 10 * time.Second, Algorithm: limiter.SlidingWindow},          // many hits
		{Requests: 50, Period: 10 * time.Second, Algorithm: limiter.FixedWindow},            // many hits
		{Requests: 86400, Period: 24 * time.Hour, Algorithm: limiter.TokenBucket},           // T = 1s
		{Requests: 3, Period: 1500 * time.Millisecond, Algorithm: limiter.SlidingWindow},    // not a divisor of 1s
		{Requests: 1_000_000, Period: 7 * 24 * time.Hour, Algorithm: limiter.SlidingWindow}, // week
		{Requests: 999_983, Period: 30 * 24 * time.Hour, Algorithm: limiter.SlidingWindow},  // month, prime R
		{Requests: 999_983, Period: 7 * 24 * time.Hour, Burst: 5, Algorithm: limiter.TokenBucket},
	}
	keys := make([]string, len(limits))
	for i, l := range limits {
		keys[i] = fmt.Sprintf("%sk%d:%s", prefix, i, l)
	}
	model := make(map[string]*limiter.State)
	for _, k := range keys {
		model[k] = new(limiter.State)
	}

	rng := rand.New(rand.NewPCG(*luaSeed, 2))
	refused := make(map[limiter.Algorithm]int)
	admitted := make(map[limiter.Algorithm]int)
	steps := []time.Duration{0, 1, 999, time.Microsecond, 333 * time.Microsecond, 7 * time.Millisecond,
		50 * time.Millisecond, 333 * time.Millisecond, time.Second, 17 * time.Second, time.Minute, time.Hour, 26 * time.Hour}
	for call := range calls {
		clock.Advance(steps[rng.IntN(len(steps))] + time.Duration(rng.IntN(3))*time.Duration(rng.Int64N(int64(time.Second))))
		n := 1 + rng.IntN(maxKeys)
		reqs := make([]limiter.Request, n)
		states := make([]limiter.State, n)
		for i := range reqs {
			j := rng.IntN(len(limits))
			if i > 0 && rng.IntN(4) == 0 {
				j = -1 // repeat an earlier key of the call
			}
			var k string
			var l limiter.Limit
			if j < 0 {
				k, l = reqs[0].Key, reqs[0].Limit
			} else {
				k, l = keys[j], limits[j]
			}
			hits := int64(rng.IntN(3))
			if rng.IntN(10) == 0 {
				hits = int64(rng.IntN(60))
			}
			reqs[i] = limiter.Request{Key: k, Limit: l, Hits: hits, Shadow: rng.IntN(4) == 0}
			states[i] = *model[k]
		}
		mode := limiter.Mode(rng.IntN(2))
		now := clock.Now()
		want := make([]limiter.Result, n)
		limiter.ApplyAll(mode, now, reqs, states, want)
		for i := range reqs {
			*model[reqs[i].Key] = states[i]
		}
		got := make([]limiter.Result, n)
		if err := s.Take(ctx, mode, reqs, got); err != nil {
			t.Fatalf("call %d: Take: %v", call, err)
		}
		for i := range reqs {
			if got[i].Allowed {
				admitted[reqs[i].Limit.Algorithm]++
			} else {
				refused[reqs[i].Limit.Algorithm]++
			}
			if !sameResult(got[i], want[i]) {
				t.Fatalf("call %d (mode %d, now %v), request %d %+v:\ngot  %+v\nwant %+v", call, mode, now.UnixNano(), i, reqs[i], got[i], want[i])
			}
		}
	}
	// The test is only as good as its mix: every algorithm must have been
	// both admitted and refused many times.
	for a := limiter.FixedWindow; a <= limiter.TokenBucket; a++ {
		if admitted[a] < calls/50 || refused[a] < calls/50 {
			t.Errorf("%s: %d admitted and %d refused results in %d calls, want at least %d of each", a, admitted[a], refused[a], calls, calls/50)
		}
	}
}

// sameResult compares results exactly, except that durations beyond 2^53 ns
// (about 104 days), which a double cannot hold to the nanosecond, may differ
// by a few nanoseconds when the clock is not on a whole microsecond (only
// fake test clocks are; see README.md "Exactness").
func sameResult(got, want limiter.Result) bool {
	near := func(a, b time.Duration) bool {
		if b < 1<<53 {
			return a == b
		}
		return a-b <= 16 && b-a <= 16
	}
	return got.Allowed == want.Allowed && got.Limit == want.Limit && got.Remaining == want.Remaining &&
		near(got.ResetAfter, want.ResetAfter) && near(got.RetryAfter, want.RetryAfter)
}

// TestScriptClockStepBack: every take script's bound on a clock stepped
// back is limiter.MaxClockStepBack (lib.lua's window, or take_fixed.lua's
// inline copy).
func TestScriptClockStepBack(t *testing.T) {
	want := fmt.Sprintf("local MAX_STEP_BACK = %d ", int64(limiter.MaxClockStepBack))
	for name, src := range map[string]string{"take.lua": takeSource, "take_fixed.lua": oneSources[limiter.FixedWindow], "take_sliding.lua": oneSources[limiter.SlidingWindow]} {
		if !strings.Contains(src, want) {
			t.Errorf("%s does not define %q", name, want)
		}
	}
}

// TestScriptHugeTolerance: a token bucket whose B*T passes 2^62 ns (10/year,
// burst 5000) gives the same results in the script as in pkg/limiter, which
// caps the tolerance at 2^62 ns (it used to saturate and admit everything).
func TestScriptHugeTolerance(t *testing.T) {
	clock := newFakeClock(time.Unix(1_700_000_000, 123_456_789))
	s, _ := newStandalone(t, Options{Now: clock.Now, ExtraTTL: time.Hour})
	l := limiter.Limit{Requests: 10, Period: 365 * 24 * time.Hour, Burst: 5000, Algorithm: limiter.TokenBucket}
	var model limiter.State
	admitted := int64(0)
	steps := []int64{1000, 400, 62, 1, 1, 5000, 0, 1}
	for i := range 200 {
		hits := steps[i%len(steps)]
		if i%len(steps) == 0 && i > 0 {
			clock.Advance(24 * time.Hour)
		}
		reqs := []limiter.Request{{Key: "huge", Limit: l, Hits: hits}}
		want := l.Apply(&model, clock.Now(), hits)
		got := make([]limiter.Result, 1)
		if err := s.Take(context.Background(), limiter.CountAll, reqs, got); err != nil {
			t.Fatalf("call %d: Take: %v", i, err)
		}
		if !sameResult(got[0], want) {
			t.Fatalf("call %d, %d hits:\ngot  %+v\nwant %+v", i, hits, got[0], want)
		}
		if got[0].Allowed {
			admitted += hits
		}
	}
	if maxAdmitted := int64(1<<62)/int64(l.Period/10) + 200/8; admitted > maxAdmitted {
		t.Errorf("admitted %d hits, want at most %d", admitted, maxAdmitted)
	}
}

// TestDecodeOne: a one-request script's reply is checked like take.lua's:
// anything but 5 packed non-negative integers with an allowed flag of 0 or
// 1 is ErrBadReply, and nothing is written to the result then.
func TestDecodeOne(t *testing.T) {
	pack := func(xs ...float64) string {
		var b []byte
		for _, x := range xs {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		return string(b)
	}
	l := limiter.Limit{Requests: 10, Period: time.Second}
	tests := []struct {
		name  string
		reply interface{}
		want  limiter.Result // zero when the reply is bad
	}{
		{"admitted", pack(1, 7, 900, 0, 0), limiter.Result{Allowed: true, Limit: 10, Remaining: 7, ResetAfter: 900}},
		{"refused", pack(0, 0, 900, 900, 0), limiter.Result{Limit: 10, ResetAfter: 900, RetryAfter: 900}},
		{"huge saturates", pack(1, 1e300, 0, 0, 0), limiter.Result{Allowed: true, Limit: 10, Remaining: math.MaxInt64}},
		{"integer", int64(1), limiter.Result{}},
		{"array", []interface{}{pack(1, 7, 900, 0, 0)}, limiter.Result{}},
		{"short", pack(1, 7, 900, 0), limiter.Result{}},
		{"long", pack(1, 7, 900, 0, 0, 0), limiter.Result{}},
		{"allowed 2", pack(2, 7, 900, 0, 0), limiter.Result{}},
		{"negative", pack(1, -7, 900, 0, 0), limiter.Result{}},
		{"fractional", pack(1, 7.5, 900, 0, 0), limiter.Result{}},
		{"NaN", pack(1, 7, math.NaN(), 0, 0), limiter.Result{}},
		{"-Inf", pack(1, 7, 900, math.Inf(-1), 0), limiter.Result{}},
	}
	// As takeOne decodes a go-redis reply.
	decodeCmd := func(cmd *redis.Cmd, r *limiter.Request, res *limiter.Result) error {
		packed, err := packedReply(cmd)
		if err != nil {
			return err
		}
		return decodeOne(packed, r, res, nil)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cmd := redis.NewCmd(context.Background())
			cmd.SetVal(tc.reply)
			var got limiter.Result
			err := decodeCmd(cmd, &limiter.Request{Key: "k", Limit: l, Hits: 1}, &got)
			if bad := tc.want == (limiter.Result{}); bad != errors.Is(err, ErrBadReply) {
				t.Fatalf("got error %v, want ErrBadReply: %v", err, bad)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	cmd := redis.NewCmd(context.Background())
	cmd.SetErr(errors.New("ERR boom"))
	if err := decodeCmd(cmd, &limiter.Request{Key: "k", Limit: l}, new(limiter.Result)); err == nil || errors.Is(err, ErrBadReply) {
		t.Errorf("a Redis error: got %v, want it returned as is", err)
	}
}

// TestMergedCallsMatchOneByOne: a call of a one-request script that carries
// several requests (each.lua, as the pipeline merges a batch's calls)
// answers each one exactly as its own call would, in order, requests on the
// same key seeing each other's hits, and leaves the same state.
func TestMergedCallsMatchOneByOne(t *testing.T) {
	_, srv := newStandalone(t, Options{})
	rdb := srv.Client(t)
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(*luaSeed, 7))
	now := time.Unix(1_700_000_000, 123_456_789)
	opts := Options{Now: func() time.Time { return now }, ExtraTTL: time.Hour}
	limits := [...][]limiter.Limit{
		limiter.FixedWindow:   {{Requests: 5, Period: time.Second}, {Requests: 4, Period: 7*time.Millisecond + 3}, {Requests: 0, Period: time.Second}},
		limiter.SlidingWindow: {{Requests: 3, Period: 100 * time.Millisecond, Algorithm: limiter.SlidingWindow}, {Requests: 7, Period: time.Minute, Algorithm: limiter.SlidingWindow}},
		limiter.TokenBucket:   {{Requests: 3, Period: time.Second, Algorithm: limiter.TokenBucket}, {Requests: 10, Period: time.Minute, Burst: 4, Algorithm: limiter.TokenBucket}},
	}
	for round := range 600 {
		a := limiter.Algorithm(round % len(limits))
		n := 1 + rng.IntN(12)
		keys, merged := make([]string, n), make([]string, n)
		args := make([]interface{}, n)
		for i := range n {
			l := limits[a][rng.IntN(len(limits[a]))]
			k := fmt.Sprintf("%s/%d/%v", a, rng.IntN(3), l)
			r := limiter.Request{Key: k, Limit: l, Hits: rng.Int64N(4)}
			keys[i], merged[i] = "one:"+k, "merged:"+k
			args[i] = string(appendOneArgv(nil, &r, rng.IntN(2) == 0, now, opts))
		}
		var want strings.Builder
		for i := range n {
			rep, err := oneScripts[a].Run(ctx, rdb, keys[i:i+1], args[i]).Text()
			if err != nil {
				t.Fatal(err)
			}
			want.WriteString(rep)
		}
		got, err := oneScripts[a].Run(ctx, rdb, merged, args...).Text()
		if err != nil {
			t.Fatal(err)
		}
		if got != want.String() {
			t.Fatalf("round %d (%s, %d requests): merged reply %x, one by one %x", round, a, n, got, want.String())
		}
		for i := range n {
			one, _ := rdb.Get(ctx, keys[i]).Result()
			m, _ := rdb.Get(ctx, merged[i]).Result()
			if one != m {
				t.Fatalf("round %d: %s holds %x merged, %x one by one", round, keys[i], m, one)
			}
		}
		now = now.Add(time.Duration(rng.Int64N(int64(300 * time.Millisecond))))
	}
}
