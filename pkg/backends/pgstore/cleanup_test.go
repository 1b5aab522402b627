package pgstore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// TestCleanupUnderLoad floods a store with short-lived distinct keys while
// Cleanup runs in small batches: the table stays bounded, the live quota
// that shares it keeps an exact count, and once the flood is over Cleanup
// leaves only live rows.
func TestCleanupUnderLoad(t *testing.T) {
	srv := pgtest.Shared(t)
	s := openStore(t, srv, Settings{CleanupInterval: -1})
	ctx := context.Background()
	short := limiter.Limit{Requests: 5, Period: 200 * time.Millisecond}
	quota := limiter.Limit{Requests: 1_000_000, Period: 1000*time.Hour + 7*time.Second}

	var created, quotaHits atomic.Int64
	var maxRows, deleted atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			res := make([]limiter.Result, 2)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				reqs := []limiter.Request{
					{Key: fmt.Sprintf("flood/%d/%d", g, i), Limit: short, Hits: 1},
					{Key: "quota", Limit: quota, Hits: 1},
				}
				if err := s.Take(ctx, limiter.CountAll, reqs, res); err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				created.Add(1)
				quotaHits.Add(1)
			}
		})
	}
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			n, err := s.Cleanup(ctx, 100)
			if err != nil {
				t.Errorf("Cleanup: %v", err)
				return
			}
			deleted.Add(n)
			if r := rowCount(t, s); r > maxRows.Load() {
				maxRows.Store(r)
			}
		}
	})
	time.Sleep(3 * time.Second)
	close(stop)
	wg.Wait()
	total := created.Load()
	t.Logf("%d keys created, %d deleted under load, at most %d rows", total, deleted.Load(), maxRows.Load())
	if total < 100 {
		t.Fatalf("only %d keys created in 3s: the flood did not run", total)
	}
	if deleted.Load() == 0 || maxRows.Load() > total/3 {
		t.Errorf("table not bounded: %d keys created, %d deleted, up to %d rows", total, deleted.Load(), maxRows.Load())
	}

	time.Sleep(2 * short.Period)
	if _, err := s.Cleanup(ctx, 100); err != nil {
		t.Fatalf("Cleanup: %v", err)
	}
	if r := rowCount(t, s); r != 1 {
		t.Errorf("rows after the flood and a cleanup: %d, want 1 (the quota)", r)
	}
	res := make([]limiter.Result, 1)
	if err := s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: "quota", Limit: quota}}, res); err != nil {
		t.Fatal(err)
	}
	if want := quota.Requests - quotaHits.Load(); res[0].Remaining != want {
		t.Errorf("quota remaining %d, want %d: cleanup lost live counts", res[0].Remaining, want)
	}
}

// TestBackgroundCleanup checks that Open's cleanup loop deletes expired
// rows, reports through OnCleanup, and stops at Close.
func TestBackgroundCleanup(t *testing.T) {
	srv := pgtest.Shared(t)
	var batches, rows atomic.Int64
	s := openStore(t, srv, Settings{
		CleanupInterval: 100 * time.Millisecond,
		CleanupBatch:    7,
		OnCleanup: func(n int64, err error) {
			if err == nil {
				batches.Add(1)
				rows.Add(n)
			}
		},
	})
	ctx := context.Background()
	l := limiter.Limit{Requests: 5, Period: 50 * time.Millisecond, Algorithm: limiter.SlidingWindow}
	res := make([]limiter.Result, 1)
	for i := range 30 {
		if err := s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: fmt.Sprint("k", i), Limit: l, Hits: 1}}, res); err != nil {
			t.Fatal(err)
		}
	}
	// OnCleanup runs after each batch has committed: wait for it to have
	// seen every row.
	deadline := time.Now().Add(10 * time.Second)
	for rows.Load() < 30 {
		if time.Now().After(deadline) {
			t.Fatalf("after 10s of background cleanup: OnCleanup saw %d rows deleted, %d rows left", rows.Load(), rowCount(t, s))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := rowCount(t, s); n != 0 || rows.Load() != 30 || batches.Load() < 5 {
		t.Errorf("%d rows left; OnCleanup saw %d rows in %d batches, want 0 left and 30 rows in at least 5 batches of 7", n, rows.Load(), batches.Load())
	}
	done := make(chan struct{})
	go func() { _ = s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not stop the cleanup loop within 5s")
	}
	n := batches.Load()
	time.Sleep(300 * time.Millisecond)
	if batches.Load() != n {
		t.Error("cleanup batches ran after Close")
	}
}
