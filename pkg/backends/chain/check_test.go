package chain

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/golden"
)

func TestCheck(t *testing.T) {
	up, down, hung := &pingStore{}, &pingStore{}, &pingStore{}
	down.setPing(errDown, false)
	hung.setPing(nil, true)
	backends := []Backend{
		{Name: "redis", Addr: "127.0.0.1:6379", Store: up},
		{Name: "redis-b", Addr: "10.0.0.2:6379", Store: down},
		{Name: "redis-c", Addr: "10.0.0.3:6379", Store: hung},
		{Name: "remote", Addr: "x:1", Store: &fakeStore{}},
		{Name: "memory", Store: &fakeStore{}, Local: true},
	}
	const timeout = 20 * time.Millisecond
	start := time.Now()
	got := Check(context.Background(), backends, timeout)
	if d := time.Since(start); d > timeout+500*time.Millisecond {
		t.Errorf("Check took %v, want about the probe timeout %v (probes run concurrently)", d, timeout)
	}
	want := []struct {
		state  State
		probed bool
		err    error
	}{
		{state: StateClosed, probed: true},
		{state: StateOpen, probed: true, err: errDown},
		{state: StateOpen, probed: true, err: context.DeadlineExceeded},
		{state: StateOpen, err: errNoPing},
		{state: StateClosed},
	}
	for i, w := range want {
		g := got[i]
		if g.Name != backends[i].Name || g.State != w.state || g.Probed != w.probed || !errors.Is(g.Err, w.err) || (w.err == nil && g.Err != nil) {
			t.Errorf("%s: got state %v probed %v err %v, want %v %v %v", backends[i].Name, g.State, g.Probed, g.Err, w.state, w.probed, w.err)
		}
	}
	if got[2].Latency < timeout {
		t.Errorf("hung probe latency: got %v, want at least the timeout %v", got[2].Latency, timeout)
	}
}

func TestWriteTable(t *testing.T) {
	tests := []struct {
		name       string
		statuses   []Status
		wantUsable bool
	}{
		{
			name: "mixed",
			statuses: []Status{
				{Name: "redis", Addr: "redis.default.svc:6379", State: StateOpen, Probed: true, Latency: 100 * time.Millisecond, Err: errors.New("dial tcp 10.0.0.1:6379:\n connect: connection refused")},
				{Name: "redis-replica", Addr: "10.0.0.2:6379", State: StateHalfOpen, Probed: true, Latency: 1234567 * time.Nanosecond},
				{Name: "memory", State: StateClosed, Local: true},
			},
			wantUsable: true,
		},
		{
			name: "none_usable",
			statuses: []Status{
				{Name: "redis", Addr: "127.0.0.1:6379", State: StateOpen, Probed: true, Latency: 5 * time.Millisecond, Err: context.DeadlineExceeded},
				{Name: "other", Addr: "x:1", State: StateOpen, Err: errNoPing},
			},
			wantUsable: false,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			usable, err := WriteTable(&buf, tc.statuses)
			if err != nil {
				t.Fatal(err)
			}
			if usable != tc.wantUsable {
				t.Errorf("usable: got %v, want %v", usable, tc.wantUsable)
			}
			golden.Check(t, filepath.Join("testdata", "table_"+tc.name+".golden"), buf.String())
		})
	}
}
