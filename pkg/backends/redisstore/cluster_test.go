package redisstore

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

// nodeOfSlot maps each hash slot to the address of the master serving it.
func nodeOfSlot(t *testing.T, cc *redis.ClusterClient) map[uint16]string {
	t.Helper()
	shards, err := cc.ClusterShards(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	m := make(map[uint16]string, 16384)
	for _, sh := range shards {
		var master string
		for _, n := range sh.Nodes {
			if n.Role == "master" {
				master = net.JoinHostPort(n.IP, strconv.FormatInt(n.Port, 10))
			}
		}
		for _, r := range sh.Slots {
			for s := r.Start; s <= r.End; s++ {
				m[uint16(s)] = master
			}
		}
	}
	return m
}

// TestCluster runs multi-key calls whose keys live on all three masters of a
// Redis Cluster, and checks slots, round trips, script reloads and the
// CountIfAllAllowed undo, then runs the conformance suite on the cluster.
func TestCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	var reloads, roundTrips atomic.Int64
	s, err := Open(Config{Cluster: &Cluster{Addrs: cluster.Addrs()}}, Options{
		OnScriptLoad: func() { reloads.Add(1) },
		OnCall:       func(time.Duration, error) { roundTrips.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	cc := cluster.Client(t)
	ctx := context.Background()
	owner := nodeOfSlot(t, cc)

	// Our slot computation is Redis's.
	for i := range 50 {
		k := fmt.Sprintf("key-%d{%d}", i, i%3)
		got, err := cc.ClusterKeySlot(ctx, Key("", k)).Result()
		if err != nil {
			t.Fatal(err)
		}
		if got != int64(Slot(k)) {
			t.Fatalf("slot of %q: Redis says %d, Slot says %d", k, got, Slot(k))
		}
	}

	// One key per master, plus a second slot on the first master.
	byNode := map[string][]string{}
	for i := 0; len(byNode) < 3 || len(byNode[owner[Slot("k0")]]) < 2; i++ {
		k := fmt.Sprintf("k%d", i)
		n := owner[Slot(k)]
		if len(byNode[n]) < 2 {
			byNode[n] = append(byNode[n], k)
		}
	}
	first := owner[Slot("k0")]
	keys := append([]string{}, byNode[first]...)
	for n, ks := range byNode {
		if n != first {
			keys = append(keys, ks[0])
		}
	}
	l := limiter.Limit{Requests: 3, Period: time.Hour}
	reqs := make([]limiter.Request, 0, len(keys)+1)
	for _, k := range keys {
		reqs = append(reqs, limiter.Request{Key: k, Limit: l, Hits: 1})
	}
	reqs = append(reqs, limiter.Request{Key: keys[0], Limit: l, Hits: 1}) // a duplicate: same slot, same script call

	res := take(t, s, limiter.CountAll, reqs...)
	for i, r := range res {
		want := int64(2)
		switch i {
		case 0:
			want = 2
		case len(res) - 1:
			want = 1 // the duplicate sees the first hit
		}
		if !r.Allowed || r.Remaining != want {
			t.Errorf("request %d (%s): got %+v, want allowed with %d remaining", i, reqs[i].Key, r, want)
		}
	}
	if got := reloads.Load(); got != 1 {
		t.Errorf("script reloads on a fresh cluster: got %d, want 1 (all nodes in one retry pipeline)", got)
	}
	// Once loaded, a call is one EVALSHA per slot, one pipeline per node.
	read := make([]limiter.Request, len(keys))
	for i, k := range keys {
		read[i] = limiter.Request{Key: k, Limit: l}
	}
	before, err := cluster.CommandStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	take(t, s, limiter.CountAll, read...)
	after, err := cluster.CommandStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := after["evalsha"] - before["evalsha"]; got != int64(len(keys)) {
		t.Errorf("EVALSHA calls for %d slots: got %d, want one per slot", len(keys), got)
	}
	if got := after["eval"] - before["eval"]; got != 0 {
		t.Errorf("EVAL calls: got %d, want 0", got)
	}
	for _, n := range cluster.Nodes {
		if got := mustDBSize(t, n); got == 0 {
			t.Errorf("master %s holds no key, want keys on every master", n.Addr)
		}
	}

	// SCRIPT FLUSH on every master: the next call reloads transparently.
	if err := cc.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	res = take(t, s, limiter.CountAll, reqs[:len(keys)]...)
	for i, r := range res {
		want := int64(1)
		if i == 0 {
			want = 0
		}
		if !r.Allowed || r.Remaining != want {
			t.Errorf("after SCRIPT FLUSH, request %d: got %+v, want allowed with %d remaining", i, r, want)
		}
	}
	if got := reloads.Load(); got != 2 {
		t.Errorf("script reloads after SCRIPT FLUSH: got %d, want 2", got)
	}

	// CountIfAllAllowed across slots: keys[0] is full, so nothing is counted
	// on the other masters either (the undo puts them back).
	trips := roundTrips.Load()
	res = take(t, s, limiter.CountIfAllAllowed, reqs[:len(keys)]...)
	if res[0].Allowed {
		t.Errorf("full key: got %+v, want refused", res[0])
	}
	for i := 1; i < len(keys); i++ {
		if !res[i].Allowed || res[i].Remaining != 1 {
			t.Errorf("CountIfAllAllowed refused call, request %d: got %+v, want allowed but not counted (1 remaining)", i, res[i])
		}
	}
	if got := roundTrips.Load() - trips; got != 1 {
		t.Errorf("OnCall calls for one Take with an undo: got %d, want 1", got)
	}
	for i := 1; i < len(keys); i++ {
		r := take(t, s, limiter.CountAll, limiter.Request{Key: keys[i], Limit: l})[0]
		if r.Remaining != 1 {
			t.Errorf("after the refused call, %s: got %d remaining, want 1 (nothing counted)", keys[i], r.Remaining)
		}
	}

	// Blocks on a few slots (Cluster routes the one-key scripts): taken,
	// then all but 3 hits given back.
	for _, k := range keys {
		bl := limiter.Limit{Requests: 100, Period: time.Hour}
		r := limiter.Request{Key: "block-" + k, Limit: bl, Hits: 40}
		var res limiter.Result
		mark, err := s.TakeBlock(ctx, r, &res)
		if err != nil || !res.Allowed {
			t.Fatalf("TakeBlock(%s): %v, %+v", r.Key, err, res)
		}
		if n, err := s.ReturnBlock(ctx, r, mark, 3); err != nil || n != 37 {
			t.Errorf("ReturnBlock(%s) = %d, %v; want 37", r.Key, n, err)
		}
		if got := take(t, s, limiter.CountAll, limiter.Request{Key: r.Key, Limit: bl})[0].Remaining; got != 97 {
			t.Errorf("%s after the return: %d remaining, want 97", r.Key, got)
		}
	}

	t.Run("MatchesLimiter", func(t *testing.T) {
		clock := newFakeClock(time.Unix(1_700_000_000, 123_456_789))
		st, err := Open(Config{Cluster: &Cluster{Addrs: cluster.Addrs()}}, Options{Now: clock.Now, ExtraTTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		matchLimiter(t, st, clock, 1500, "cluster/")
	})
	t.Run("Conformance", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
			clock := limitertest.NewFakeClock(time.Unix(1_700_000_000, 0))
			st, err := Open(Config{Cluster: &Cluster{Addrs: cluster.Addrs()}}, Options{Now: clock.Now, ExtraTTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st, clock
		})
	})
	t.Run("ConformanceServerTime", func(t *testing.T) {
		limitertest.Run(t, func(t *testing.T) (limiter.Store, limitertest.Clock) {
			st, err := Open(Config{Cluster: &Cluster{Addrs: cluster.Addrs()}}, Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = st.Close() })
			return st, nil
		})
	})
}

func mustDBSize(t *testing.T, n *redistest.Server) int64 {
	t.Helper()
	size, err := n.Client(t).DBSize(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return size
}
