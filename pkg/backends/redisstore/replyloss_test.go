package redisstore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// replyDropper is a Dialer whose connections lose the reply of the next
// command that contains match once armed: the command reaches Redis and
// runs, its reply is read off the wire and thrown away, and the connection
// is closed, as when a network path drops between the request and the
// reply. go-redis then sees io.EOF.
type replyDropper struct {
	match atomic.Pointer[[]byte]
	armed atomic.Bool
	fired atomic.Int64
}

func (d *replyDropper) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var nd net.Dialer
	c, err := nd.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &droppingConn{Conn: c, d: d}, nil
}

type droppingConn struct {
	net.Conn
	d    *replyDropper
	mu   sync.Mutex
	drop bool // the next reply is lost
	lost bool // it was: the connection is closed
}

func (c *droppingConn) Write(b []byte) (int, error) {
	if bytes.Contains(bytes.ToLower(b), *c.d.match.Load()) && c.d.armed.CompareAndSwap(true, false) {
		c.mu.Lock()
		c.drop = true
		c.mu.Unlock()
	}
	return c.Conn.Write(b)
}

func (c *droppingConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.lost:
		return 0, io.EOF
	case !c.drop:
		return c.Conn.Read(b)
	}
	// Wait for the reply, so the command has surely run, then lose it.
	_ = c.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, _ = c.Conn.Read(make([]byte, 64<<10))
	_ = c.Conn.Close()
	c.lost = true
	c.d.fired.Add(1)
	return 0, io.EOF
}

// droppingStore opens cfg as Open does, on connections that lose the
// reply of the next command containing "evalsha" once the dropper is
// armed.
func droppingStore(t *testing.T, cfg Config) (*Store, *replyDropper) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	uo, desc, err := cfg.universal()
	if err != nil {
		t.Fatal(err)
	}
	drop := &replyDropper{}
	evalsha := []byte("evalsha")
	drop.match.Store(&evalsha)
	uo.Dialer = drop.dial
	s, err := cfg.newStore(uo, desc, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, drop
}

// TestClusterReplyLossCountsOnce: when the reply of a script call is lost
// (issue 16, finding 4), go-redis's cluster client used to send the script
// again (up to MaxRedirects times on EOF and non-deadline timeouts,
// MaxRetries: -1 notwithstanding), counting the hits twice, and undo.lua
// took them back twice. A lost reply must be an error, with the hits
// counted at most once.
func TestClusterReplyLossCountsOnce(t *testing.T) {
	cluster := redistest.StartCluster(t)
	s, drop := droppingStore(t, Config{Cluster: &Cluster{Addrs: cluster.Addrs()}})
	reader, err := Open(Config{Cluster: &Cluster{Addrs: cluster.Addrs()}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reader.Close() })
	ctx := context.Background()
	owner := nodeOfSlot(t, cluster.Client(t))
	l := limiter.Limit{Requests: 10, Period: time.Hour}

	// Keys on three masters; the first call loads the script everywhere.
	var keys []string
	seen := map[string]bool{}
	for i := 0; len(keys) < 3; i++ {
		k := fmt.Sprintf("loss-%d", i)
		if n := owner[Slot(k)]; !seen[n] {
			seen[n] = true
			keys = append(keys, k)
		}
	}
	warm := make([]limiter.Request, len(keys))
	for i := range keys {
		warm[i] = limiter.Request{Key: keys[i], Limit: l} // a read: counts nothing
	}
	take(t, s, limiter.CountAll, warm...)

	used := func(k string) int64 {
		t.Helper()
		r := take(t, reader, limiter.CountAll, limiter.Request{Key: k, Limit: l})[0]
		return l.Requests - r.Remaining
	}
	lose := func(what string, mode limiter.Mode, reqs ...limiter.Request) {
		t.Helper()
		drop.armed.Store(true)
		before := drop.fired.Load()
		err := s.Take(ctx, mode, reqs, make([]limiter.Result, len(reqs)))
		if drop.fired.Load() != before+1 {
			t.Fatalf("%s: the reply was dropped %d times, want once (err %v)", what, drop.fired.Load()-before, err)
		}
		if err == nil {
			t.Errorf("%s: a lost reply gave no error (the script was sent again)", what)
		}
	}

	// One slot: the plain command path.
	lose("one key", limiter.CountAll, limiter.Request{Key: keys[0], Limit: l, Hits: 1})
	if got := used(keys[0]); got > 1 {
		t.Errorf("one key: %d hits counted for one lost reply, want at most 1", got)
	}

	// Several slots: the cluster pipeline.
	reqs := []limiter.Request{{Key: keys[1], Limit: l, Hits: 1}, {Key: keys[2], Limit: l, Hits: 1}}
	lose("two slots", limiter.CountAll, reqs...)
	for _, k := range keys[1:] {
		if got := used(k); got > 1 {
			t.Errorf("two slots, %s: %d hits counted for one lost reply, want at most 1", k, got)
		}
	}

	// undo.lua: keys[0] is full, so a CountIfAllAllowed call on keys[0] and
	// keys[1] is undone on keys[1]; losing the undo's reply must not take
	// its hit back twice.
	full := limiter.Request{Key: keys[0], Limit: l, Hits: l.Requests}
	take(t, s, limiter.CountAll, full)
	before := used(keys[1])
	undo := []byte(undoScript.Hash())
	drop.match.Store(&undo)
	lose("undo", limiter.CountIfAllAllowed, limiter.Request{Key: keys[0], Limit: l, Hits: 1}, limiter.Request{Key: keys[1], Limit: l, Hits: 1})
	if got := used(keys[1]); got < before {
		t.Errorf("undo: %d hits counted after the undo, want at least %d (the undo ran twice)", got, before)
	}
}

// TestStandaloneReplyLossCountsOnce: on the standalone pipeline, a lost
// reply fails every call of its batch (each may have run) and none is sent
// again, so no hit is counted twice; the next call redials and serves.
func TestStandaloneReplyLossCountsOnce(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	s, drop := droppingStore(t, Config{URL: URL(srv.URL())})
	if s.pipe == nil {
		t.Fatal("the standalone store does not use the pipeline")
	}
	reader := newReader(t, srv)
	l := limiter.Limit{Requests: 1000, Period: time.Hour}
	take(t, s, limiter.CountAll, limiter.Request{Key: "warm", Limit: l}) // loads the scripts

	// Concurrent calls, so that several may share the batch whose reply is
	// lost. Every call ran exactly once: the dropper waits for the batch's
	// replies before losing them, and the calls behind it go out on a new
	// connection. A call sent again would count twice.
	const calls = 32
	drop.armed.Store(true)
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range calls {
		wg.Go(func() {
			err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: "k", Limit: l, Hits: 1}}, make([]limiter.Result, 1))
			if err != nil {
				if ErrorKind(err) != KindConnection {
					t.Errorf("lost reply: got %v (kind %q), want kind %q", err, ErrorKind(err), KindConnection)
				}
				failed.Add(1)
			}
		})
	}
	wg.Wait()
	if drop.fired.Load() != 1 {
		t.Fatalf("the reply was dropped %d times, want once", drop.fired.Load())
	}
	if failed.Load() == 0 {
		t.Fatal("no call failed although a reply was lost")
	}
	used := l.Requests - take(t, reader, limiter.CountAll, limiter.Request{Key: "k", Limit: l})[0].Remaining
	if used != calls {
		t.Errorf("%d hits counted for %d calls (%d failed), want exactly one per call", used, calls, failed.Load())
	}
	// The next call dials afresh and counts once.
	take(t, s, limiter.CountAll, limiter.Request{Key: "k", Limit: l, Hits: 1})
	if got := l.Requests - take(t, reader, limiter.CountAll, limiter.Request{Key: "k", Limit: l})[0].Remaining; got != used+1 {
		t.Errorf("after the loss: %d hits counted, want %d", got, used+1)
	}
}

// newReader opens a second store on srv that reads counts (without the
// pipeline, so that it shares nothing with the store under test).
func newReader(t *testing.T, srv *redistest.Server) *Store {
	t.Helper()
	r, err := Open(Config{URL: URL(srv.URL()), AutoPipeline: new(false)}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}
