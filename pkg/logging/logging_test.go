package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Settings
		wantErr string
		// check inspects what logging "hello" at info and debug wrote.
		check func(t *testing.T, out string)
	}{
		{name: "defaults are text at info", cfg: Settings{}, check: func(t *testing.T, out string) {
			if !strings.Contains(out, "level=INFO msg=hello") || strings.Contains(out, "DEBUG") {
				t.Errorf("got %q, want one text line at INFO", out)
			}
		}},
		{name: "json at debug", cfg: Settings{Level: "debug", Format: "json"}, check: func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 2 {
				t.Fatalf("got %d lines, want 2 (info and debug): %q", len(lines), out)
			}
			var m map[string]any
			if err := json.Unmarshal([]byte(lines[1]), &m); err != nil {
				t.Fatalf("line %q is not JSON: %v", lines[1], err)
			}
			if m["level"] != "DEBUG" || m["msg"] != "hello" {
				t.Errorf("got %v, want level DEBUG, msg hello", m)
			}
		}},
		{name: "error level drops info", cfg: Settings{Level: "error"}, check: func(t *testing.T, out string) {
			if out != "" {
				t.Errorf("got %q, want nothing", out)
			}
		}},
		{name: "bad level", cfg: Settings{Level: "loud"}, wantErr: `unknown level "loud"`},
		{name: "bad format", cfg: Settings{Format: "xml"}, wantErr: `unknown format "xml"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log, _, err := New(&buf, tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("New: got error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			log.Info("hello")
			log.Debug("hello")
			tc.check(t, buf.String())
		})
	}
}

func TestLevelVarChangesLive(t *testing.T) {
	var buf bytes.Buffer
	log, lv, err := New(&buf, Settings{Level: "info"})
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("before")
	lv.Set(slog.LevelDebug)
	log.Debug("after")
	if out := buf.String(); strings.Contains(out, "before") || !strings.Contains(out, "after") {
		t.Errorf("got %q, want only the debug line logged after the level change", out)
	}
}

// clock is a settable fake time.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

func TestThrottle(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	th := &Throttle{Every: 10 * time.Second, Now: clk.Now}
	type step struct {
		advance        time.Duration
		key            string
		wantOK         bool
		wantSuppressed int64
	}
	steps := []step{
		{key: "redis", wantOK: true},
		{key: "redis"},
		{key: "redis", advance: 9 * time.Second},
		{key: "memory", wantOK: true}, // keys are independent
		{key: "redis", advance: time.Second, wantOK: true, wantSuppressed: 2},
		{key: "redis", advance: 10 * time.Second, wantOK: true},
		{key: "memory", wantOK: true},
	}
	for i, s := range steps {
		clk.advance(s.advance)
		ok, n := th.Allow(s.key)
		if ok != s.wantOK || n != s.wantSuppressed {
			t.Errorf("step %d (%s): got (%v, %d), want (%v, %d)", i, s.key, ok, n, s.wantOK, s.wantSuppressed)
		}
	}
}

func TestThrottleLog(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	th := &Throttle{Now: clk.Now}
	var buf bytes.Buffer
	log, _, err := New(&buf, Settings{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 5 {
		th.Warn(ctx, log, "backends[0]", "backend failing", "err", "connection refused")
	}
	clk.advance(DefaultEvery)
	th.Warn(ctx, log, "backends[0]", "backend failing", "err", "connection refused")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d lines, want 2:\n%s", len(lines), buf.String())
	}
	if strings.Contains(lines[0], "suppressed") || !strings.Contains(lines[0], "key=backends[0]") {
		t.Errorf("first line %q: want the key and no suppressed count", lines[0])
	}
	if !strings.Contains(lines[1], "suppressed=4") {
		t.Errorf("second line %q: want suppressed=4", lines[1])
	}
}

func TestThrottleBoundsKeys(t *testing.T) {
	th := &Throttle{}
	for i := range maxKeys + 100 {
		th.Allow(strings.Repeat("k", i%50) + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if n := th.n.Load(); n != maxKeys {
		t.Errorf("tracked keys: got %d, want %d", n, maxKeys)
	}
}

func TestThrottleConcurrent(t *testing.T) {
	clk := &clock{now: time.Unix(1000, 0)}
	th := &Throttle{Every: time.Hour, Now: clk.Now}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if ok, _ := th.Allow("k"); ok {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 1 {
		t.Errorf("allowed %d messages within the interval, want 1", allowed)
	}
	clk.advance(time.Hour)
	if ok, n := th.Allow("k"); !ok || n != 7999 {
		t.Errorf("after the interval: got (%v, %d), want (true, 7999)", ok, n)
	}
}
