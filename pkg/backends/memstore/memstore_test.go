package memstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

func newTestStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v): %v", opts, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformanceFakeClock(t *testing.T) {
	limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
		clock := limitertest.NewFakeClock(t0)
		return newTestStore(t, Options{Now: clock.Now}), clock
	})
}

func TestConformanceRealClock(t *testing.T) {
	limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
		return newTestStore(t, Options{}), nil
	})
}

// TestConformanceOneShard runs the suite with every key in one shard, so
// multi-key calls lock one shard once.
func TestConformanceOneShard(t *testing.T) {
	limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
		clock := limitertest.NewFakeClock(t0)
		return newTestStore(t, Options{Shards: 1, Now: clock.Now}), clock
	})
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name       string
		opts       Options
		wantShards int
		wantMax    int // sum of the shards' shares
		wantErr    error
	}{
		{name: "defaults", opts: Options{}, wantShards: 256, wantMax: DefaultMaxKeys},
		{name: "small max keys gets fewer shards", opts: Options{MaxKeys: 10_000}, wantShards: 8, wantMax: 10_000},
		{name: "tiny max keys", opts: Options{MaxKeys: 3}, wantShards: 1, wantMax: 3},
		{name: "shards rounded up to a power of two", opts: Options{Shards: 100}, wantShards: 128, wantMax: DefaultMaxKeys},
		{name: "shards at most max keys", opts: Options{MaxKeys: 3, Shards: 64}, wantShards: 2, wantMax: 3},
		{name: "uneven split", opts: Options{MaxKeys: 1001, Shards: 4}, wantShards: 4, wantMax: 1001},
		{name: "negative max keys", opts: Options{MaxKeys: -1}, wantErr: ErrInvalidOptions},
		{name: "negative shards", opts: Options{Shards: -1}, wantErr: ErrInvalidOptions},
		{name: "too many keys per shard", opts: Options{MaxKeys: math.MaxInt32 * 2, Shards: 1}, wantErr: ErrInvalidOptions},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(tc.opts)
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Fatalf("got error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			defer s.Close()
			if got := len(s.shards); got != tc.wantShards {
				t.Errorf("got %d shards, want %d", got, tc.wantShards)
			}
			total := 0
			for i := range s.shards {
				total += s.shards[i].max
				if d := s.shards[i].max - s.shards[0].max; d < -1 || d > 1 {
					t.Errorf("shard %d holds %d, shard 0 holds %d: want an even split", i, s.shards[i].max, s.shards[0].max)
				}
			}
			if total != tc.wantMax {
				t.Errorf("got shards holding %d keys in total, want %d", total, tc.wantMax)
			}
		})
	}
}

// TestValidateMatchesNew: Validate (what extauthz validate runs) refuses
// exactly what New refuses, at the offending setting (issue 16, finding
// 6: max_keys 1000000000000 validated, then serve exited).
func TestValidateMatchesNew(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		path string // "" when valid
	}{
		{name: "defaults", opts: Options{}},
		{name: "the largest max_keys", opts: Options{MaxKeys: MaxKeysLimit, SweepInterval: -1}},
		{name: "max_keys 10^12", opts: Options{MaxKeys: 1_000_000_000_000}, path: "max_keys"},
		{name: "max_keys just beyond", opts: Options{MaxKeys: MaxKeysLimit + 1}, path: "max_keys"},
		{name: "negative max_keys", opts: Options{MaxKeys: -1}, path: "max_keys"},
		{name: "too few shards", opts: Options{MaxKeys: 3_000_000_000, Shards: 1}, path: "shards"},
		{name: "enough shards", opts: Options{MaxKeys: 3_000_000_000, Shards: 2, SweepInterval: -1}},
		{name: "shards beyond the cap count as the cap", opts: Options{Shards: 1 << 30, SweepInterval: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			verr := o.Validate()
			s, nerr := New(tc.opts)
			if nerr == nil {
				s.Close()
			}
			if (verr == nil) != (nerr == nil) {
				t.Fatalf("Validate: %v; New: %v: want both nil or both errors", verr, nerr)
			}
			var fe *field.Error
			switch {
			case tc.path == "" && verr != nil:
				t.Fatalf("Validate: %v, want nil", verr)
			case tc.path != "" && (!errors.As(verr, &fe) || fe.Path != tc.path):
				t.Fatalf("Validate: %v, want a field error at %q", verr, tc.path)
			}
		})
	}
}

func TestShardFillsCacheLines(t *testing.T) {
	if got := unsafe.Sizeof(shard{}); got%64 != 0 {
		t.Errorf("got shard size %d, want a multiple of 64 (false sharing between shard locks)", got)
	}
}

func take(t *testing.T, s *Store, reqs ...limiter.Request) []limiter.Result {
	t.Helper()
	res := make([]limiter.Result, len(reqs))
	if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
		t.Fatalf("Take: %v", err)
	}
	return res
}

func TestMaxKeysEvictsEarliestExpiry(t *testing.T) {
	clock := limitertest.NewFakeClock(t0)
	s := newTestStore(t, Options{MaxKeys: 4, Shards: 1, SweepInterval: -1, Now: clock.Now})
	// Four keys of one hit each; "k0" expires first (shortest period).
	for i := range 4 {
		l := limiter.Limit{Requests: 1, Period: time.Duration(i+1) * time.Hour, Algorithm: limiter.SlidingWindow}
		take(t, s, limiter.Request{Key: fmt.Sprintf("k%d", i), Limit: l, Hits: 1})
	}
	if got := s.Len(); got != 4 {
		t.Fatalf("got Len %d, want 4", got)
	}
	long := limiter.Limit{Requests: 1, Period: 24 * time.Hour}
	take(t, s, limiter.Request{Key: "new", Limit: long, Hits: 1})
	if got := s.Len(); got != 4 {
		t.Errorf("got Len %d, want 4 (MaxKeys)", got)
	}
	if got := s.Evictions(); got != 1 {
		t.Errorf("got %d evictions, want 1", got)
	}
	// With 4 slots every slot is sampled: k0 went; the others remain.
	for i, wantAllowed := range []bool{true, false, false, false} {
		l := limiter.Limit{Requests: 1, Period: time.Duration(i+1) * time.Hour, Algorithm: limiter.SlidingWindow}
		res := make([]limiter.Result, 1)
		err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: fmt.Sprintf("k%d", i), Limit: l}}, res)
		if err != nil {
			t.Fatal(err)
		}
		if wantRemaining := map[bool]int64{true: 1, false: 0}[wantAllowed]; res[0].Remaining != wantRemaining {
			t.Errorf("k%d: got Remaining %d, want %d", i, res[0].Remaining, wantRemaining)
		}
	}
}

// TestEvictionKeepsRefusingCounter: one client refused by its per-ip
// counter, sending a new value of another descriptor with each request
// (CountAll counts both), must not push its per-ip counter out of a full
// shard: fresh counters of one hit are evicted first, though they expire
// later.
func TestEvictionKeepsRefusingCounter(t *testing.T) {
	clock := limitertest.NewFakeClock(t0)
	s := newTestStore(t, Options{MaxKeys: 64, Shards: 1, SweepInterval: -1, Now: clock.Now})
	perIP := limiter.Limit{Requests: 5, Period: time.Hour}
	perUser := limiter.Limit{Requests: 3, Period: 24 * time.Hour}
	admitted := 0
	for i := range 2000 {
		res := take(t, s, limiter.Request{Key: "ip", Limit: perIP, Hits: 1},
			limiter.Request{Key: fmt.Sprintf("user/%d", i), Limit: perUser, Hits: 1})
		if res[0].Allowed {
			admitted++
		}
	}
	if admitted != 5 {
		t.Errorf("per-ip admitted %d of 2000, want 5", admitted)
	}
	if got := s.Evictions(); got < 2000-64 {
		t.Errorf("got %d evictions, want at least %d: the fresh counters go", got, 2000-64)
	}
}

// TestEvictionPrefersFewestUsedHits: among unexpired counters the one with
// the fewest used hits goes, even when another expires sooner.
func TestEvictionPrefersFewestUsedHits(t *testing.T) {
	clock := limitertest.NewFakeClock(t0)
	s := newTestStore(t, Options{MaxKeys: 4, Shards: 1, SweepInterval: -1, Now: clock.Now})
	short := limiter.Limit{Requests: 10, Period: time.Minute}
	long := limiter.Limit{Requests: 10, Period: time.Hour}
	take(t, s, limiter.Request{Key: "busy", Limit: short, Hits: 6})
	take(t, s, limiter.Request{Key: "light", Limit: long, Hits: 1})
	take(t, s, limiter.Request{Key: "mid1", Limit: long, Hits: 3})
	take(t, s, limiter.Request{Key: "mid2", Limit: long, Hits: 3})
	take(t, s, limiter.Request{Key: "new", Limit: long, Hits: 1})
	for key, want := range map[string]int64{"busy": 4, "light": 10, "mid1": 7, "mid2": 7} {
		l := long
		if key == "busy" {
			l = short
		}
		if got := take(t, s, limiter.Request{Key: key, Limit: l})[0].Remaining; got != want {
			t.Errorf("%s: got Remaining %d, want %d", key, got, want)
		}
	}
}

func TestMaxKeysReusesExpiredFirst(t *testing.T) {
	clock := limitertest.NewFakeClock(t0)
	s := newTestStore(t, Options{MaxKeys: 64, Shards: 1, SweepInterval: -1, Now: clock.Now})
	short := limiter.Limit{Requests: 5, Period: time.Second}
	for i := range 64 {
		take(t, s, limiter.Request{Key: fmt.Sprintf("old%d", i), Limit: short, Hits: 1})
	}
	clock.Advance(time.Minute)
	for i := range 64 {
		take(t, s, limiter.Request{Key: fmt.Sprintf("new%d", i), Limit: short, Hits: 1})
	}
	if got := s.Evictions(); got != 0 {
		t.Errorf("got %d evictions, want 0: only expired counters had to go", got)
	}
	if got := s.Len(); got != 64 {
		t.Errorf("got Len %d, want 64", got)
	}
}

func TestFloodStaysBounded(t *testing.T) {
	s := newTestStore(t, Options{MaxKeys: 1000, SweepInterval: -1})
	l := limiter.Limit{Requests: 10, Period: time.Hour}
	const n = 5000
	for i := range n {
		take(t, s, limiter.Request{Key: fmt.Sprintf("flood/%d", i), Limit: l, Hits: 1})
	}
	if got := s.Len(); got > 1000 {
		t.Errorf("got Len %d, want at most MaxKeys 1000", got)
	}
	if got := s.Evictions(); got < n-1000 {
		t.Errorf("got %d evictions, want at least %d", got, n-1000)
	}
}

func TestSweepRemovesExpired(t *testing.T) {
	clock := limitertest.NewFakeClock(t0)
	s := newTestStore(t, Options{Shards: 1, SweepInterval: -1, Now: clock.Now})
	short := limiter.Limit{Requests: 5, Period: time.Second}
	long := limiter.Limit{Requests: 5, Period: time.Hour}
	for i := range 100 {
		take(t, s, limiter.Request{Key: fmt.Sprintf("short%d", i), Limit: short, Hits: 1})
		take(t, s, limiter.Request{Key: fmt.Sprintf("long%d", i), Limit: long, Hits: 1})
	}
	clock.Advance(2 * time.Second)
	s.sweep()
	if got := s.Len(); got != 100 {
		t.Errorf("got Len %d after sweep, want 100", got)
	}
	// Freed slots are reused, and the long counters survived.
	for i := range 100 {
		take(t, s, limiter.Request{Key: fmt.Sprintf("again%d", i), Limit: short, Hits: 1})
		if r := take(t, s, limiter.Request{Key: fmt.Sprintf("long%d", i), Limit: long})[0]; r.Remaining != 4 {
			t.Fatalf("long%d: got Remaining %d, want 4", i, r.Remaining)
		}
	}
	slots := 0
	for i := range s.shards {
		slots += len(s.shards[i].ents)
	}
	if slots != 200 {
		t.Errorf("got %d slots, want 200 (freed slots reused)", slots)
	}
}

func TestSweeperRunsAndCloseStopsIt(t *testing.T) {
	clock := limitertest.NewFakeClock(t0)
	before := runtime.NumGoroutine()
	s, err := New(Options{SweepInterval: time.Millisecond, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	take(t, s, limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1, Period: time.Second}, Hits: 1})
	clock.Advance(time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for s.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("got Len %d 5s after expiry, want 0: sweeper did not run", s.Len())
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("got %d goroutines after Close, want %d", runtime.NumGoroutine(), before)
		}
		time.Sleep(time.Millisecond)
	}
	// Counting still works after Close.
	take(t, s, limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1, Period: time.Second}, Hits: 1})
}

func TestReadsAndRefusalsStoreNothing(t *testing.T) {
	s := newTestStore(t, Options{SweepInterval: -1})
	p := time.Hour
	take(t, s,
		limiter.Request{Key: "read", Limit: limiter.Limit{Requests: 1, Period: p}},
		limiter.Request{Key: "zero", Limit: limiter.Limit{Requests: 0, Period: p}, Hits: 1},
		limiter.Request{Key: "bucket", Limit: limiter.Limit{Requests: 1, Period: p, Algorithm: limiter.TokenBucket}, Hits: 2},
	)
	take(t, s, limiter.Request{Key: "read1", Limit: limiter.Limit{Requests: 1, Period: p, Algorithm: limiter.SlidingWindow}})
	if got := s.Len(); got != 0 {
		t.Errorf("got Len %d, want 0", got)
	}
}

func TestTakeDoesNotAllocate(t *testing.T) {
	s := newTestStore(t, Options{SweepInterval: -1})
	ctx := context.Background()
	for _, l := range []limiter.Limit{
		{Requests: 1e9, Period: time.Hour},
		{Requests: 1e9, Period: time.Hour, Algorithm: limiter.SlidingWindow},
		{Requests: 1e9, Period: time.Hour, Algorithm: limiter.TokenBucket},
	} {
		one := []limiter.Request{{Key: "one/" + l.Algorithm.String(), Limit: l, Hits: 1}}
		three := []limiter.Request{
			{Key: "a/" + l.Algorithm.String(), Limit: l, Hits: 1},
			{Key: "b/" + l.Algorithm.String(), Limit: l, Hits: 1},
			{Key: "a/" + l.Algorithm.String(), Limit: l, Hits: 1},
		}
		res := make([]limiter.Result, 3)
		for _, mode := range []limiter.Mode{limiter.CountAll, limiter.CountIfAllAllowed} {
			for name, reqs := range map[string][]limiter.Request{"one": one, "three": three} {
				if err := s.Take(ctx, mode, reqs, res); err != nil { // creates the keys
					t.Fatal(err)
				}
				n := testing.AllocsPerRun(100, func() { _ = s.Take(ctx, mode, reqs, res) })
				if n != 0 {
					t.Errorf("%s, mode %d, %s request(s) on existing keys: got %v allocs per Take, want 0", l.Algorithm, mode, name, n)
				}
			}
		}
	}
}

// TestTakeManyBeyondStackBuffers covers calls with more requests than
// takeMany keeps on the stack.
func TestTakeManyBeyondStackBuffers(t *testing.T) {
	for _, n := range []int{stackRequests, stackRequests + 1, 64} {
		s, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		reqs := make([]limiter.Request, n)
		for i := range reqs {
			reqs[i] = limiter.Request{Key: fmt.Sprintf("k%d", i%(n/2+1)), Limit: limiter.Limit{Requests: 3, Period: time.Hour}, Hits: 1}
		}
		res := make([]limiter.Result, n)
		for _, mode := range []limiter.Mode{limiter.CountAll, limiter.CountIfAllAllowed} {
			if err := s.Take(context.Background(), mode, reqs, res); err != nil {
				t.Fatalf("n=%d mode=%d: Take: %v", n, mode, err)
			}
		}
		if got := s.Len(); got != n/2+1 {
			t.Errorf("n=%d: Len() = %d, want %d", n, got, n/2+1)
		}
	}
}
