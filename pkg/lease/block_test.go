package lease

import (
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

var t0 = time.Unix(1_700_000_000, 0)

func at(d time.Duration) time.Time { return t0.Add(d) }

// step is one operation on a block: take hits at time at (want ok), or
// check avail.
type step struct {
	at    time.Duration
	hits  int64 // taken; 0: only check avail
	ok    bool
	avail int64 // avail at at, after the take
}

func TestBlockAccounting(t *testing.T) {
	fixed := limiter.Limit{Requests: 100, Period: time.Minute}
	sliding := limiter.Limit{Requests: 100, Period: time.Minute, Algorithm: limiter.SlidingWindow}
	bucket := limiter.Limit{Requests: 10, Period: time.Second, Algorithm: limiter.TokenBucket} // T = 100ms
	tests := []struct {
		name  string
		limit limiter.Limit
		grant int64
		res   limiter.Result // the store's answer to the block take at t0
		steps []step
	}{
		{"fixed window: the grant, then nothing", fixed, 10, limiter.Result{Allowed: true, Remaining: 50, ResetAfter: 30 * time.Second}, []step{
			{at: 0, hits: 4, ok: true, avail: 6},
			{at: time.Second, hits: 7, ok: false, avail: 6},
			{at: 2 * time.Second, hits: 6, ok: true, avail: 0},
			{at: 3 * time.Second, hits: 1, ok: false, avail: 0},
		}},
		{"fixed window: the grant ends with the window", fixed, 10, limiter.Result{Allowed: true, Remaining: 50, ResetAfter: 30 * time.Second}, []step{
			{at: 29*time.Second + 999*time.Millisecond, avail: 10},
			{at: 30 * time.Second, hits: 1, ok: false, avail: 0},
		}},
		{"sliding window: ends a period before ResetAfter", sliding, 10, limiter.Result{Allowed: true, Remaining: 50, ResetAfter: time.Minute + 20*time.Second}, []step{
			{at: 19 * time.Second, hits: 10, ok: true, avail: 0},
		}},
		{"sliding window: nothing after the window", sliding, 10, limiter.Result{Allowed: true, Remaining: 50, ResetAfter: time.Minute + 20*time.Second}, []step{
			{at: 20 * time.Second, hits: 1, ok: false, avail: 0},
		}},
		{"token bucket: decays one token per emission interval", bucket, 5, limiter.Result{Allowed: true, Remaining: 5, ResetAfter: 500 * time.Millisecond}, []step{
			{at: 0, avail: 5},
			{at: 100 * time.Millisecond, avail: 4},
			{at: 150 * time.Millisecond, avail: 3}, // ceil(1.5) tokens refilled in the store
			{at: 450 * time.Millisecond, avail: 0},
		}},
		{"token bucket: hits count towards the decay", bucket, 5, limiter.Result{Allowed: true, Remaining: 5, ResetAfter: 500 * time.Millisecond}, []step{
			{at: 0, hits: 3, ok: true, avail: 2},
			{at: 250 * time.Millisecond, avail: 2}, // decay 3 = hits 3
			{at: 350 * time.Millisecond, hits: 2, ok: false, avail: 1},
			{at: 350 * time.Millisecond, hits: 1, ok: true, avail: 0}, // decay 4, then a hit
			{at: 500 * time.Millisecond, avail: 0},
		}},
		{"token bucket: decay and hits add up once the decay passes the hits", bucket, 10, limiter.Result{Allowed: true, Remaining: 0, ResetAfter: time.Second}, []step{
			{at: 0, hits: 2, ok: true, avail: 8},
			{at: 500 * time.Millisecond, hits: 1, ok: true, avail: 4}, // decay 5, then a hit
			{at: 500 * time.Millisecond, hits: 4, ok: true, avail: 0},
			{at: 900 * time.Millisecond, hits: 1, ok: false, avail: 0},
			{at: 500 * time.Millisecond, avail: 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := block{limit: tc.limit}
			b.grant(t0, tc.grant, tc.res, -1)
			for i, s := range tc.steps {
				if s.hits > 0 {
					var r limiter.Result
					if ok := b.take(at(s.at), s.hits, &r); ok != s.ok {
						t.Fatalf("step %d: take(%v, %d) = %v, want %v", i, s.at, s.hits, ok, s.ok)
					} else if ok && (!r.Allowed || r.Limit != tc.limit.Capacity()) {
						t.Errorf("step %d: result %+v, want allowed with limit %d", i, r, tc.limit.Capacity())
					}
				}
				if got := b.avail(at(s.at)); got != s.avail {
					t.Errorf("step %d: avail(%v) = %d, want %d", i, s.at, got, s.avail)
				}
			}
		})
	}
}

func TestBlockGiveBack(t *testing.T) {
	b := block{limit: limiter.Limit{Requests: 100, Period: time.Minute}}
	b.grant(t0, 10, limiter.Result{Allowed: true, ResetAfter: time.Minute}, -1)
	var r limiter.Result
	if !b.take(t0, 4, &r) {
		t.Fatal("take 4 of 10 refused")
	}
	gen := b.gen
	b.giveBack(gen, 4)
	if got := b.avail(t0); got != 10 {
		t.Errorf("avail after give-back = %d, want 10", got)
	}
	b.take(t0, 4, &r)
	b.grant(t0, 5, limiter.Result{Allowed: true, ResetAfter: time.Minute}, -1)
	b.giveBack(gen, 4) // the old grant's hits: ignored by the new one
	if got := b.avail(t0); got != 5 {
		t.Errorf("avail after a stale give-back = %d, want 5", got)
	}
}

// TestBlockDetach: a grant is detached for a return only while the store
// may still take some of its hits back, and a detached grant admits
// nothing more and ignores later give-backs.
func TestBlockDetach(t *testing.T) {
	fixed := limiter.Limit{Requests: 100, Period: time.Minute}
	sliding := limiter.Limit{Requests: 100, Period: time.Minute, Algorithm: limiter.SlidingWindow}
	bucket := limiter.Limit{Requests: 10, Period: time.Second, Algorithm: limiter.TokenBucket} // T = 100ms
	tests := []struct {
		name  string
		limit limiter.Limit
		mark  int64
		used  int64
		at    time.Duration
		want  bool
	}{
		{"fixed in its window", fixed, 7, 4, 30 * time.Second, true},
		{"fixed no mark", fixed, -1, 4, 30 * time.Second, false},
		{"fixed all used", fixed, 7, 10, 30 * time.Second, false},
		{"fixed window over", fixed, 7, 4, 40 * time.Second, false},
		{"sliding window over", sliding, 7, 4, 40 * time.Second, true},
		{"sliding a period after", sliding, 7, 4, 100 * time.Second, false},
		{"bucket in time", bucket, 7, 4, 300 * time.Millisecond, true},
		{"bucket decayed", bucket, 7, 4, time.Second, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := block{limit: tc.limit}
			// Windows: the block ends 40s after t0 (ResetAfter; sliding: a
			// period less).
			reset := 40 * time.Second
			if tc.limit.Algorithm == limiter.SlidingWindow {
				reset += time.Minute
			}
			b.grant(t0, 10, limiter.Result{Allowed: true, Remaining: 50, ResetAfter: reset}, tc.mark)
			var r limiter.Result
			if !b.take(t0, tc.used, &r) {
				t.Fatalf("take %d of 10 refused", tc.used)
			}
			gen := b.gen
			u, ok := b.detach(at(tc.at))
			if ok != tc.want {
				t.Fatalf("detach = %v, want %v", ok, tc.want)
			}
			if !ok {
				return
			}
			if want := (unused{limit: tc.limit, mark: tc.mark, granted: 10, used: tc.used}); u != want {
				t.Errorf("detached %+v, want %+v", u, want)
			}
			if b.take(at(tc.at), 1, &r) {
				t.Error("a detached grant admitted a hit")
			}
			b.giveBack(gen, tc.used)
			if got := b.avail(at(tc.at)); got != 0 {
				t.Errorf("a give-back to the detached grant left %d available, want 0", got)
			}
			if _, again := b.detach(at(tc.at)); again {
				t.Error("a grant detached twice")
			}
		})
	}
}

func TestBlockSize(t *testing.T) {
	fixed := limiter.Limit{Requests: 1000, Period: time.Minute}
	bucket := limiter.Limit{Requests: 10, Period: time.Second, Burst: 1000, Algorithm: limiter.TokenBucket}
	tests := []struct {
		name     string
		limit    limiter.Limit
		learn    *limiter.Result // learned at t0
		now      time.Duration
		hits     int64
		fraction float64
		want     int64
	}{
		{"nothing known: a share of the capacity", fixed, nil, 0, 1, 0.1, 100},
		{"shrinks with the remaining quota", fixed, &limiter.Result{Remaining: 300, ResetAfter: time.Minute}, time.Second, 1, 0.1, 30},
		{"no larger than the hits: no lease", fixed, &limiter.Result{Remaining: 19, ResetAfter: time.Minute}, time.Second, 1, 0.1, 0},
		{"at least the hits, else no lease", fixed, &limiter.Result{Remaining: 500, ResetAfter: time.Minute}, time.Second, 50, 0.1, 0},
		{"a new window: the capacity again", fixed, &limiter.Result{Remaining: 0, ResetAfter: time.Minute}, time.Minute, 1, 0.5, 500},
		{"token bucket: remaining plus the refill", bucket, &limiter.Result{Remaining: 100}, 5 * time.Second, 1, 0.5, 75},
		{"token bucket: never above the burst", bucket, &limiter.Result{Remaining: 990}, time.Hour, 1, 1, 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := block{limit: tc.limit}
			if tc.learn != nil {
				b.learn(t0, *tc.learn)
			}
			if got := b.size(at(tc.now), tc.hits, tc.fraction); got != tc.want {
				t.Errorf("size = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestLeaseValidate(t *testing.T) {
	tests := []struct {
		lease limiter.Lease
		path  string // "" valid
	}{
		{limiter.Lease{}, ""},
		{limiter.Lease{Fraction: 1, HotAfter: 1}, ""},
		{limiter.Lease{Fraction: -0.1}, "fraction"},
		{limiter.Lease{Fraction: 1.01}, "fraction"},
		{limiter.Lease{HotAfter: -1}, "hot_after"},
		{limiter.Lease{HotAfter: limiter.MaxLeaseHotAfter + 1}, "hot_after"},
	}
	for _, tc := range tests {
		err := tc.lease.Validate()
		if (err == nil) != (tc.path == "") {
			t.Errorf("%+v: Validate() = %v, want error at %q", tc.lease, err, tc.path)
			continue
		}
		if err != nil && err.Error()[:len(tc.path)] != tc.path {
			t.Errorf("%+v: Validate() = %v, want path %q", tc.lease, err, tc.path)
		}
	}
}
