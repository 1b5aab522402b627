package redistest

import (
	"context"
	"testing"
	"time"
)

func TestStandaloneKillRestart(t *testing.T) {
	s := Start(t, Options{Config: []string{"maxmemory 64mb"}})
	ctx := context.Background()
	c := s.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	s.Kill()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING after Kill: got nil error, want one")
	}
	s.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		// the pooled connection was broken; the next one is fresh
		if err := c.Ping(ctx).Err(); err != nil {
			t.Fatalf("PING after Restart: %v", err)
		}
	}
	stats, err := s.CommandStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := stats["ping"]; got < 1 {
		t.Errorf("commandstats ping calls: got %d, want >= 1", got)
	}
}

func TestPauseResume(t *testing.T) {
	s := Start(t, Options{})
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := ping(s.Addr, nil); err == nil {
		t.Fatal("PING while paused: got nil error, want a timeout")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := ping(s.Addr, nil); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

func TestCluster(t *testing.T) {
	c := StartCluster(t)
	ctx := context.Background()
	cc := c.Client(t)
	// Keys spread over slots owned by different masters.
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := cc.Set(ctx, k, k, time.Minute).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	used := 0
	for _, n := range c.Nodes {
		keys, err := n.Client(t).DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if keys > 0 {
			used++
		}
	}
	if used < 2 {
		t.Errorf("masters holding keys: got %d, want >= 2", used)
	}
}

func TestSentinelFailover(t *testing.T) {
	s := StartSentinel(t)
	ctx := context.Background()
	before, err := s.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if before != s.Servers[0] {
		t.Fatalf("master before failover: got %s, want %s", before.Addr, s.Servers[0].Addr)
	}
	after := s.Failover(t)
	if after != s.Servers[1] {
		t.Fatalf("master after failover: got %s, want %s", after.Addr, s.Servers[1].Addr)
	}
}

func TestParseCommandStats(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_evalsha:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\ncmdstat_ping:calls=1,usec=0\r\n"
	got, err := ParseCommandStats(info)
	if err != nil {
		t.Fatal(err)
	}
	if got["evalsha"] != 12 || got["ping"] != 1 || len(got) != 2 {
		t.Errorf("ParseCommandStats: got %v, want evalsha=12 ping=1", got)
	}
}

func TestTLS(t *testing.T) {
	s, files := StartTLS(t)
	ctx := context.Background()
	if err := s.Client(t).Ping(ctx).Err(); err != nil {
		t.Fatalf("PING over TLS: %v", err)
	}
	if err := ping(s.Addr, nil); err == nil {
		t.Error("plain-text PING to a TLS-only server: got nil error, want one")
	}
	if files.ServerName == "" || files.CAFile == "" {
		t.Errorf("TLSFiles: got %+v, want files and a server name", files)
	}
}
