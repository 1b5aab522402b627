package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
)

// replyLoss arms a group of dropProxies: once armed, the first command
// containing "evalsha" that any of them forwards reaches Redis and runs,
// and its reply is read and thrown away, and both connections are closed,
// as when the network loses the reply.
type replyLoss struct {
	armed atomic.Bool
	fired atomic.Int64
}

// dropProxy is a TCP proxy in front of one Redis node.
type dropProxy struct {
	ln     net.Listener
	target string
	loss   *replyLoss
	mu     sync.Mutex
	conns  []net.Conn
	closed bool
}

// startDropProxy listens on a free loopback port and forwards every
// connection to target until the test ends.
func startDropProxy(t *testing.T, target string, loss *replyLoss) *dropProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &dropProxy{ln: ln, target: target, loss: loss}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *dropProxy) addr() string { return p.ln.Addr().String() }

func (p *dropProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *dropProxy) close() {
	p.mu.Lock()
	p.closed = true
	conns := p.conns
	p.conns = nil
	p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
}

// track remembers c so that close closes it; false when the proxy is
// closed already.
func (p *dropProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns = append(p.conns, c)
	return true
}

func (p *dropProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.handle(c)
	}
}

func (p *dropProxy) handle(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		_ = client.Close()
		return
	}
	if !p.track(client) || !p.track(server) {
		_ = client.Close()
		_ = server.Close()
		return
	}
	var drop atomic.Bool // the next reply on this connection is lost
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := client.Read(buf)
			if n > 0 {
				if bytes.Contains(bytes.ToLower(buf[:n]), []byte("evalsha")) && p.loss.armed.CompareAndSwap(true, false) {
					drop.Store(true)
				}
				if _, werr := server.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		_ = server.Close()
		_ = client.Close()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := server.Read(buf)
		if n > 0 && drop.Load() {
			// The command ran: its reply is here. Lose it.
			p.loss.fired.Add(1)
			break
		}
		if n > 0 {
			if _, werr := client.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	_ = client.Close()
	_ = server.Close()
}

// announceProxies makes every node of c announce its proxy's port (CONFIG
// SET cluster-announce-port), so that CLUSTER SLOTS and SHARDS, and so the binary's
// cluster client, only ever name the proxies; it waits until every node
// reports the proxies for every shard.
func announceProxies(t *testing.T, c *redistest.Cluster, proxies []*dropProxy) {
	t.Helper()
	ctx := context.Background()
	want := map[string]bool{}
	for i, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DisableIdentity: true})
		defer cl.Close()
		if err := cl.ConfigSet(ctx, "cluster-announce-port", strconv.Itoa(proxies[i].port())).Err(); err != nil {
			t.Fatalf("CONFIG SET cluster-announce-port on %s: %v", n.Addr, err)
		}
		want[strconv.Itoa(proxies[i].port())] = true
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, n := range c.Nodes {
		cl := redis.NewClient(&redis.Options{Addr: n.Addr, DisableIdentity: true})
		defer cl.Close()
		for {
			shards, err := cl.ClusterShards(ctx).Result()
			ok := err == nil && len(shards) == len(c.Nodes)
			for _, s := range shards {
				for _, sn := range s.Nodes {
					ok = ok && want[strconv.FormatInt(sn.Port, 10)]
				}
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s still names other addresses than the proxies: %+v, %v", n.Addr, shards, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// TestHostileClusterReplyLoss (issue 16, finding 4, end to end): the binary
// serves from a Redis Cluster whose every node it reaches through a proxy
// that can lose the reply of a script call after Redis ran it. The lost
// call is answered by the failure mode (open here: admitted, the worst
// case), and the hits it carried are counted once, not again by a resent
// script: with a limit of 5, the lost call plus the calls after it admit
// exactly 5, and Redis ran exactly one EVALSHA for the lost call.
func TestHostileClusterReplyLoss(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t)
	loss := &replyLoss{}
	proxies := make([]*dropProxy, len(cluster.Nodes))
	addrs := make([]string, len(cluster.Nodes))
	for i, n := range cluster.Nodes {
		proxies[i] = startDropProxy(t, n.Addr, loss)
		addrs[i] = proxies[i].addr()
	}
	announceProxies(t, cluster, proxies)
	cfg := fmt.Sprintf(`backends:
  - type: redis
    cluster: {addrs: [%s]}
breaker: {call_timeout: 2s, consecutive_failures: 100}
failure_mode: open
domains:
  - domain: hz
    descriptors:
      - key: c
        rate_limit: {unit: hour, requests_per_unit: 5}
`, strings.Join(addrs, ", "))
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", cfg)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	ctx := context.Background()
	hostileWindow()
	// Load the script on every node (keys spread over the slots).
	for i := range 30 {
		if _, err := rls.ShouldRateLimit(ctx, rlsReq("hz", fmt.Sprintf("c=warm-%d", i))); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
	}

	for _, tc := range []struct {
		name   string
		values []string // one descriptor each, in one request
	}{
		{"one key", []string{"lost-1"}},
		{"two keys in one request", []string{"lost-2a", "lost-2b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kv := make([]string, len(tc.values))
			for i, v := range tc.values {
				kv[i] = "c=" + v
			}
			before, err := cluster.CommandStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			firedBefore := loss.fired.Load()
			loss.armed.Store(true)
			resp, err := rls.ShouldRateLimit(ctx, rlsReq("hz", kv...))
			loss.armed.Store(false)
			if n := loss.fired.Load() - firedBefore; n != 1 {
				t.Fatalf("the reply was lost %d times, want once", n)
			}
			if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				t.Fatalf("the call whose reply was lost: %v, %v; want OK (failure_mode: open)", resp.GetOverallCode(), err)
			}
			after, err := cluster.CommandStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got, max := after["evalsha"]-before["evalsha"], int64(len(tc.values)); got < 1 || got > max {
				t.Errorf("Redis ran %d EVALSHA for the lost call, want 1 to %d (one per node, never resent)", got, max)
			}
			for _, v := range tc.values {
				r := rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return rlsReq("hz", "c="+v) })
				// The lost call was admitted (open) and counted once.
				expect(t, "c="+v+" after the lost call", r, 4)
			}
		})
	}
}

// TestHostileStandaloneReplyLoss: the same lost reply, with one Redis
// behind the proxy (url), with and without auto pipelining.
func TestHostileStandaloneReplyLoss(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, extra string }{
		{"auto pipelining (default)", ""},
		{"auto_pipeline false", "\n    auto_pipeline: false"},
	} {
		extra := tc.extra
		t.Run(tc.name, func(t *testing.T) {
			srv := redistest.Start(t, redistest.Options{})
			loss := &replyLoss{}
			proxy := startDropProxy(t, srv.Addr, loss)
			cfg := fmt.Sprintf(`backends:
  - type: redis
    url: redis://%s/0%s
breaker: {call_timeout: 2s, consecutive_failures: 100}
failure_mode: open
domains:
  - domain: hz
    descriptors:
      - key: c
        rate_limit: {unit: hour, requests_per_unit: 5}
`, proxy.addr(), extra)
			path := WriteFile(t, t.TempDir(), "extauthz.yaml", cfg)
			p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
			rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
			ctx := context.Background()
			hostileWindow()
			if _, err := rls.ShouldRateLimit(ctx, rlsReq("hz", "c=warm")); err != nil {
				t.Fatalf("warm-up: %v", err)
			}
			before, err := srv.CommandStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			loss.armed.Store(true)
			resp, err := rls.ShouldRateLimit(ctx, rlsReq("hz", "c=lost"))
			loss.armed.Store(false)
			if n := loss.fired.Load(); n != 1 {
				t.Fatalf("the reply was lost %d times, want once", n)
			}
			if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
				t.Fatalf("the call whose reply was lost: %v, %v; want OK (failure_mode: open)", resp.GetOverallCode(), err)
			}
			after, err := srv.CommandStats(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := after["evalsha"] - before["evalsha"]; got != 1 {
				t.Errorf("Redis ran %d EVALSHA for the lost call, want 1 (never resent)", got)
			}
			expect(t, "c=lost after the lost call", rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return rlsReq("hz", "c=lost") }), 4)
		})
	}
}
