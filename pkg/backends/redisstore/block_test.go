package redisstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// TestReturnBlock: a block's unused hits go back only while Redis still
// counts them against the same limit, and the key is then exactly as if
// the block had been only the hits that stay counted: a twin key that
// counted those hits at the block's time reads the same afterwards.
func TestReturnBlock(t *testing.T) {
	t0 := time.Unix(1_700_000_040, 0) // a whole minute: windows start here
	clock := newFakeClock(t0)
	s, _ := newStandalone(t, Options{Now: clock.Now, ExtraTTL: time.Hour})
	ctx := context.Background()
	fixed := limiter.Limit{Requests: 100, Period: time.Minute}
	sliding := limiter.Limit{Requests: 100, Period: time.Minute, Algorithm: limiter.SlidingWindow}
	bucket := limiter.Limit{Requests: 100, Period: 100 * time.Second, Algorithm: limiter.TokenBucket} // T = 1s
	tests := []struct {
		name          string
		limit         limiter.Limit
		before, after int64         // other replicas' hits before and after the block
		late          int64         // and just before the return
		granted, used int64         // the block
		wait          time.Duration // from the block's take to its return
		want          int64         // hits given back
	}{
		{name: "fixed same window", limit: fixed, before: 5, after: 7, granted: 30, used: 10, wait: 20 * time.Second, want: 20},
		{name: "fixed all used", limit: fixed, granted: 30, used: 30, wait: time.Second, want: 0},
		{name: "fixed next window", limit: fixed, granted: 30, used: 10, wait: time.Minute, want: 0},
		{name: "sliding same window", limit: sliding, before: 5, after: 7, granted: 30, used: 10, wait: 20 * time.Second, want: 20},
		{name: "sliding next window", limit: sliding, before: 5, granted: 30, used: 10, wait: 80 * time.Second, want: 20},
		{name: "sliding next window written", limit: sliding, before: 5, late: 3, granted: 30, used: 10, wait: 80 * time.Second, want: 20},
		{name: "fixed next window written", limit: fixed, late: 3, granted: 30, used: 10, wait: time.Minute, want: 0},
		{name: "sliding two windows on", limit: sliding, granted: 30, used: 10, wait: 130 * time.Second, want: 0},
		{name: "bucket decayed less than used", limit: bucket, before: 5, after: 7, granted: 30, used: 10, wait: 3 * time.Second, want: 20},
		{name: "bucket decayed more than used", limit: bucket, before: 5, granted: 30, used: 2, wait: 10*time.Second + 1, want: 19},
		{name: "bucket fully decayed", limit: bucket, granted: 30, used: 0, wait: 30 * time.Second, want: 0},
		{name: "bucket refilled and taken again", limit: bucket, granted: 30, used: 0, wait: 40 * time.Second, late: 50, want: 0},
		{name: "bucket returned at once", limit: bucket, granted: 30, used: 0, want: 30},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := t0.Add(time.Duration(i) * time.Hour)
			clock.Set(start.Add(10 * time.Second))
			key, twin := fmt.Sprintf("block-%d", i), fmt.Sprintf("twin-%d", i)
			hits := func(k string, n int64) limiter.Result {
				t.Helper()
				var res [1]limiter.Result
				if err := s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: k, Limit: tc.limit, Hits: n}}, res[:]); err != nil {
					t.Fatal(err)
				}
				return res[0]
			}
			hits(key, tc.before)
			hits(twin, tc.before)
			var res limiter.Result
			mark, err := s.TakeBlock(ctx, limiter.Request{Key: key, Limit: tc.limit, Hits: tc.granted}, &res)
			if err != nil || !res.Allowed {
				t.Fatalf("TakeBlock: %v, %+v", err, res)
			}
			want := clock.Now().UnixMicro()
			if tc.limit.Algorithm != limiter.TokenBucket {
				want = clock.Now().UnixNano() / int64(tc.limit.Period)
			}
			if mark != want {
				t.Errorf("mark %d, want %d", mark, want)
			}
			hits(key, tc.after)
			clock.Advance(tc.wait)
			hits(key, tc.late)
			got, err := s.ReturnBlock(ctx, limiter.Request{Key: key, Limit: tc.limit, Hits: tc.granted}, mark, tc.used)
			if err != nil {
				t.Fatalf("ReturnBlock: %v", err)
			}
			if got != tc.want {
				t.Errorf("gave back %d hits, want %d", got, tc.want)
			}
			// The twin counted only what stays counted, at the block's time.
			clock.Advance(-tc.wait)
			hits(twin, tc.granted-got)
			hits(twin, tc.after)
			clock.Advance(tc.wait)
			hits(twin, tc.late)
			if a, b := hits(key, 0), hits(twin, 0); a != b {
				t.Errorf("after the return the key reads %+v, want %+v (as if %d hits had been counted)", a, b, tc.granted-got)
			}
		})
	}
}

// TestReturnBlockLimitChanged: a block returned under the limit it was
// taken with after its key was counted under another (pkg/lease returns
// the blocks of a reloaded limit) gives back its unused hits only when the
// key's state still holds the block's window or bucket; the key then reads
// as a twin that counted only the hits that stay.
func TestReturnBlockLimitChanged(t *testing.T) {
	t0 := time.Unix(1_700_000_040, 0)
	clock := newFakeClock(t0)
	s, _ := newStandalone(t, Options{Now: clock.Now, ExtraTTL: time.Hour})
	ctx := context.Background()
	fixed := limiter.Limit{Requests: 100, Period: time.Minute}
	bucket := limiter.Limit{Requests: 100, Period: 100 * time.Second, Algorithm: limiter.TokenBucket} // T = 1s
	tests := []struct {
		name string
		old  limiter.Limit // the block's
		new  limiter.Limit // the key's 7 hits after it
		want int64         // of 20 unused
	}{
		{name: "fixed, more requests", old: fixed, new: limiter.Limit{Requests: 200, Period: time.Minute}, want: 20},
		{name: "fixed to a longer period", old: fixed, new: limiter.Limit{Requests: 100, Period: time.Hour}, want: 0},
		{name: "sliding to fixed", old: limiter.Limit{Requests: 100, Period: time.Minute, Algorithm: limiter.SlidingWindow}, new: fixed, want: 20},
		{name: "fixed to bucket", old: fixed, new: bucket, want: 0},
		{name: "bucket to fixed", old: bucket, new: fixed, want: 0},
		{name: "bucket, twice the rate", old: bucket, new: limiter.Limit{Requests: 200, Period: 100 * time.Second, Algorithm: limiter.TokenBucket}, want: 20},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			clock.Set(t0.Add(time.Duration(i)*time.Hour + 10*time.Second))
			key, twin := fmt.Sprintf("changed-%d", i), fmt.Sprintf("changed-twin-%d", i)
			hits := func(k string, l limiter.Limit, n int64) limiter.Result {
				t.Helper()
				var res [1]limiter.Result
				if err := s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: k, Limit: l, Hits: n}}, res[:]); err != nil {
					t.Fatal(err)
				}
				return res[0]
			}
			block := limiter.Request{Key: key, Limit: tc.old, Hits: 30}
			var res limiter.Result
			mark, err := s.TakeBlock(ctx, block, &res)
			if err != nil || !res.Allowed {
				t.Fatalf("TakeBlock: %v, %+v", err, res)
			}
			hits(key, tc.new, 7)
			clock.Advance(3 * time.Second)
			got, err := s.ReturnBlock(ctx, block, mark, 10)
			if err != nil || got != tc.want {
				t.Fatalf("gave back %d hits (%v), want %d", got, err, tc.want)
			}
			clock.Advance(-3 * time.Second)
			hits(twin, tc.old, 30-got)
			hits(twin, tc.new, 7)
			clock.Advance(3 * time.Second)
			if a, b := hits(key, tc.new, 0), hits(twin, tc.new, 0); a != b {
				t.Errorf("after the return the key reads %+v, want %+v", a, b)
			}
		})
	}
}

// TestReturnBlockOnServerTime: on Redis's clock (production), a block is
// marked with the server's window or time, and a token bucket block given
// back at once returns all its unused tokens but those decayed.
func TestReturnBlockOnServerTime(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := context.Background()
	for _, l := range []limiter.Limit{
		{Requests: 1000, Period: time.Hour},
		{Requests: 1000, Period: time.Hour, Algorithm: limiter.SlidingWindow},
		{Requests: 1000, Period: 1000 * time.Second, Algorithm: limiter.TokenBucket}, // T = 1s
	} {
		r := limiter.Request{Key: "server-" + l.Algorithm.String(), Limit: l, Hits: 100}
		before := time.Now()
		var res limiter.Result
		mark, err := s.TakeBlock(ctx, r, &res)
		if err != nil || !res.Allowed {
			t.Fatalf("%s: TakeBlock: %v, %+v", l.Algorithm, err, res)
		}
		lo, hi := before.UnixNano()/int64(l.Period), time.Now().UnixNano()/int64(l.Period)
		if l.Algorithm == limiter.TokenBucket {
			lo, hi = before.Add(-time.Second).UnixMicro(), time.Now().Add(time.Second).UnixMicro()
		}
		if mark < lo || mark > hi {
			t.Errorf("%s: mark %d, want the server's window or time, %d to %d", l.Algorithm, mark, lo, hi)
		}
		// The token bucket block has lost a token or so to decay, fewer than
		// the 40 used.
		n, err := s.ReturnBlock(ctx, r, mark, 40)
		const want = 60
		if err != nil || n != want {
			t.Errorf("%s: ReturnBlock = %d, %v, want %d", l.Algorithm, n, err, want)
		}
		var after [1]limiter.Result
		if err := s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: r.Key, Limit: l}}, after[:]); err != nil {
			t.Fatal(err)
		}
		if got := after[0].Remaining; got != 1000-(100-want) {
			t.Errorf("%s: remaining %d after the return, want %d", l.Algorithm, got, 1000-(100-want))
		}
	}
}

// TestReturnBlockRejects: a return that cannot describe a block, or a block
// take that Take would refuse, is refused before it reaches Redis.
func TestReturnBlockRejects(t *testing.T) {
	s, _ := newStandalone(t, Options{})
	ctx := context.Background()
	l := limiter.Limit{Requests: 10, Period: time.Second}
	for _, tc := range []struct {
		name       string
		r          limiter.Request
		mark, used int64
	}{
		{"used above the block", limiter.Request{Key: "k", Limit: l, Hits: 5}, 1, 6},
		{"negative used", limiter.Request{Key: "k", Limit: l, Hits: 5}, 1, -1},
		{"negative mark", limiter.Request{Key: "k", Limit: l, Hits: 5}, -1, 0},
		{"no requests", limiter.Request{Key: "k", Limit: limiter.Limit{Period: time.Second}, Hits: 5}, 1, 0},
		{"unknown algorithm", limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1, Period: time.Second, Algorithm: 9}, Hits: 5}, 1, 0},
	} {
		if _, err := s.ReturnBlock(ctx, tc.r, tc.mark, tc.used); !errors.Is(err, limiter.ErrInvalidRequest) {
			t.Errorf("%s: got %v, want ErrInvalidRequest", tc.name, err)
		}
	}
	// TakeBlock validates as Take does.
	var res limiter.Result
	if _, err := s.TakeBlock(ctx, limiter.Request{Key: "k", Limit: limiter.Limit{Requests: 1, Period: time.Second, Algorithm: 9}, Hits: 5}, &res); !errors.Is(err, limiter.ErrUnknownAlgorithm) {
		t.Errorf("TakeBlock of an unknown algorithm: got %v, want ErrUnknownAlgorithm", err)
	}
	if _, err := s.TakeBlock(ctx, limiter.Request{Key: "k", Limit: l, Hits: -1}, &res); !errors.Is(err, limiter.ErrInvalidRequest) {
		t.Errorf("TakeBlock of negative hits: got %v, want ErrInvalidRequest", err)
	}
}
