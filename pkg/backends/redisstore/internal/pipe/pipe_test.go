package pipe

import (
	"bytes"
	"context"
	"errors"
	"math"

	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
)

// testDialer dials addr, counting dials and the writes on its connections,
// and passes each connection through wrap when it is set.
type testDialer struct {
	addr   string
	wrap   func(net.Conn) net.Conn
	dials  atomic.Int64
	writes atomic.Int64
}

func (d *testDialer) dial(ctx context.Context) (net.Conn, error) {
	var nd net.Dialer
	nc, err := nd.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return nil, err
	}
	d.dials.Add(1)
	nc = &countConn{Conn: nc, writes: &d.writes}
	if d.wrap != nil {
		nc = d.wrap(nc)
	}
	return nc, nil
}

type countConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c *countConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

func newClient(t testing.TB, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// do runs args and returns a copy of the reply.
func do(ctx context.Context, c *Client, args ...string) (Reply, error) {
	var out Reply
	err := c.Do(ctx, args, func(r Reply) error {
		out = r
		out.Str = bytes.Clone(r.Str)
		return nil
	})
	return out, err
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestNewRejects(t *testing.T) {
	dial := func(context.Context) (net.Conn, error) { return nil, errors.New("unused") }
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no Dial", Config{}},
		{"negative Conns", Config{Dial: dial, Conns: -1}},
		{"negative DialTimeout", Config{Dial: dial, DialTimeout: -1}},
		{"negative WriteTimeout", Config{Dial: dial, WriteTimeout: -1}},
		{"negative ReadTimeout", Config{Dial: dial, ReadTimeout: -1}},
		{"negative Gather", Config{Dial: dial, Gather: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := New(tt.cfg); err == nil {
				_ = c.Close()
				t.Fatal("New succeeded")
			}
		})
	}
}

// 64 goroutines increment one counter: every call succeeds once, exactly,
// and the calls share writes.
func TestConcurrentIncr(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial})
	ctx := timeout(t, 20*time.Second)

	const workers, each = 64, 100
	const total = workers * each
	var seen [total + 1]atomic.Bool
	var ok atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for range workers {
		wg.Go(func() {
			for range each {
				r, err := do(ctx, c, "INCR", "counter")
				if err != nil {
					errs <- err
					continue
				}
				ok.Add(1)
				if r.Kind != ':' || r.Int < 1 || r.Int > total || seen[r.Int].Swap(true) {
					errs <- errors.New("INCR answered " + strconv.Quote(string(r.Kind)) + " " + strconv.FormatInt(r.Int, 10))
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := srv.Client(t).Get(ctx, "counter").Int64()
	if err != nil {
		t.Fatal(err)
	}
	if got != ok.Load() || got != total {
		t.Errorf("counter = %d, successful calls %d, calls %d", got, ok.Load(), total)
	}
	writes := d.writes.Load()
	t.Logf("%d calls in %d writes on %d connections", total, writes, d.dials.Load())
	if writes > total/4 {
		t.Errorf("%d writes for %d calls: batching does not happen", writes, total)
	}
}

func TestSetup(t *testing.T) {
	const pass = "s3cret-pw"
	srv := redistest.Start(t, redistest.Options{Config: []string{"requirepass " + pass}})
	ctx := timeout(t, 10*time.Second)

	t.Run("auth and select", func(t *testing.T) {
		var setups atomic.Int64
		d := &testDialer{addr: srv.Addr}
		c := newClient(t, Config{Dial: d.dial, Conns: 1, Setup: func(context.Context) ([][]string, error) {
			setups.Add(1)
			return [][]string{{"AUTH", pass}, {"SELECT", "3"}}, nil
		}})
		for i := range 3 {
			if _, err := do(ctx, c, "SET", "setup-key", strconv.Itoa(i)); err != nil {
				t.Fatal(err)
			}
		}
		if n := setups.Load(); n != 1 {
			t.Errorf("Setup called %d times on one connection", n)
		}
		for db, want := range map[int]int64{0: 0, 3: 1} {
			rc := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: pass, DB: db})
			n, err := rc.Exists(ctx, "setup-key").Result()
			_ = rc.Close()
			if err != nil || n != want {
				t.Errorf("EXISTS setup-key in db %d = %d, %v; want %d", db, n, err, want)
			}
		}
	})

	tests := []struct {
		name  string
		setup func(context.Context) ([][]string, error)
		want  string // in the error
	}{
		{"wrong password", func(context.Context) ([][]string, error) {
			return [][]string{{"AUTH", "wrong-pw-xyzzy"}, {"SELECT", "3"}}, nil
		}, "WRONGPASS"},
		{"failing Setup", func(context.Context) ([][]string, error) {
			return nil, errors.New("no password file")
		}, "no password file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &testDialer{addr: srv.Addr}
			c := newClient(t, Config{Dial: d.dial, Conns: 1, Setup: tt.setup})
			const calls = 3
			for range calls {
				_, err := do(ctx, c, "SET", "setup-key", "x")
				switch {
				case err == nil:
					t.Fatal("call succeeded")
				case !errors.Is(err, ErrNotSent):
					t.Errorf("error %q does not wrap ErrNotSent", err)
				case !strings.Contains(err.Error(), "setup") || !strings.Contains(err.Error(), tt.want):
					t.Errorf("error %q does not name setup and %q", err, tt.want)
				case strings.Contains(err.Error(), "wrong-pw-xyzzy"):
					t.Errorf("error %q holds the password", err)
				}
			}
			if n := d.dials.Load(); n != calls {
				t.Errorf("%d dials for %d calls, want one each", n, calls)
			}
		})
	}
}

// Error replies and replies of other types fail their call only: the
// connection carries on.
func TestErrorReplies(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial, Conns: 1})
	ctx := timeout(t, 10*time.Second)

	steps := []struct {
		args    []string
		reply   Reply
		errPref string // an Error with this prefix
		unexp   bool   // ErrUnexpected
	}{
		{args: []string{"SET", "str", "v"}, reply: Reply{Kind: '+', Str: []byte("OK")}},
		{args: []string{"EVALSHA", strings.Repeat("f", 40), "0"}, errPref: "NOSCRIPT"},
		{args: []string{"RPUSH", "list", "a", "b"}, reply: Reply{Kind: ':', Int: 2}},
		{args: []string{"GET", "list"}, errPref: "WRONGTYPE"},
		{args: []string{"INCR", "str"}, errPref: "ERR"},
		{args: []string{"NOSUCHCOMMAND"}, errPref: "ERR"},
		{args: []string{"LRANGE", "list", "0", "-1"}, unexp: true},
		{args: []string{"GET", "str"}, reply: Reply{Kind: '$', Str: []byte("v")}},
		{args: []string{"GET", "missing"}, reply: Reply{Kind: '$', Nil: true}},
		{args: []string{"PING"}, reply: Reply{Kind: '+', Str: []byte("PONG")}},
	}
	for _, s := range steps {
		called := false
		var r Reply
		err := c.Do(ctx, s.args, func(got Reply) error {
			called, r = true, got
			r.Str = bytes.Clone(got.Str)
			return nil
		})
		var e Error
		var re redis.Error // what go-redis's helpers look for
		switch {
		case s.errPref != "":
			if !errors.As(err, &e) || !strings.HasPrefix(string(e), s.errPref) || !errors.As(err, &re) {
				t.Errorf("%q: err = %v, want a redis.Error %s", s.args, err, s.errPref)
			}
		case s.unexp:
			if !errors.Is(err, ErrUnexpected) {
				t.Errorf("%q: err = %v, want ErrUnexpected", s.args, err)
			}
		case err != nil:
			t.Errorf("%q: %v", s.args, err)
		case r.Kind != s.reply.Kind || !bytes.Equal(r.Str, s.reply.Str) || r.Int != s.reply.Int || r.Nil != s.reply.Nil:
			t.Errorf("%q: reply {%q %q %d %v}, want {%q %q %d %v}", s.args,
				r.Kind, r.Str, r.Int, r.Nil, s.reply.Kind, s.reply.Str, s.reply.Int, s.reply.Nil)
		}
		if called != (err == nil) {
			t.Errorf("%q: fn called %v with error %v", s.args, called, err)
		}
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("%d dials, want the one connection kept", n)
	}

	if err := c.Do(ctx, []string{"EVALSHA", strings.Repeat("f", 40), "0"}, nil); !redis.HasErrorPrefix(err, "NOSCRIPT") {
		t.Errorf("EVALSHA: redis.HasErrorPrefix(%v, NOSCRIPT) is false", err)
	}
	fnErr := errors.New("from fn")
	if err := c.Do(ctx, []string{"PING"}, func(Reply) error { return fnErr }); err != fnErr {
		t.Errorf("Do = %v, want fn's error", err)
	}
}

// A caller's deadline ends Do at once while the server does not answer;
// the reply, when it comes, is dropped and the next call gets its own.
func TestDeadlineWhilePaused(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial, Conns: 1, ReadTimeout: 10 * time.Second})
	if r, err := do(timeout(t, 5*time.Second), c, "INCR", "paused"); err != nil || r.Int != 1 {
		t.Fatalf("INCR = %d, %v", r.Int, err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })

	start := time.Now()
	_, err := do(timeout(t, 200*time.Millisecond), c, "INCR", "paused")
	if elapsed := time.Since(start); elapsed > time.Second {
		t.Errorf("Do returned after %v, deadline 200ms", elapsed)
	}
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotSent) {
		t.Errorf("written call: err = %v, want context.DeadlineExceeded not wrapping ErrNotSent", err)
	}
	// The connection waits for that reply: this call is never written.
	_, err = do(timeout(t, 100*time.Millisecond), c, "INCR", "paused")
	if !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotSent) {
		t.Errorf("queued call: err = %v, want context.DeadlineExceeded and ErrNotSent", err)
	}
	// An ended context sends nothing.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := do(done, c, "INCR", "paused"); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrNotSent) {
		t.Errorf("ended context: err = %v, want context.Canceled and ErrNotSent", err)
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	// The first abandoned INCR ran (2), the others did not.
	r, err := do(timeout(t, 5*time.Second), c, "INCR", "paused")
	if err != nil || r.Int != 3 {
		t.Errorf("INCR after resume = %d, %v; want 3", r.Int, err)
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("%d dials, want the connection kept", n)
	}
}

// DoWithin's bound ends a call as a context deadline would: a written
// call may still run, a queued one is never sent, and the connection is
// kept.
func TestDoWithinWhilePaused(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial, Conns: 1, ReadTimeout: 10 * time.Second})
	ctx := timeout(t, 10*time.Second)
	incr := func(bound time.Duration) (int64, error) {
		var n int64
		err := c.DoWithin(ctx, bound, []string{"INCR", "bounded"}, func(r Reply) error { n = r.Int; return nil })
		return n, err
	}
	if n, err := incr(time.Second); err != nil || n != 1 {
		t.Fatalf("INCR = %d, %v", n, err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })

	start := time.Now()
	_, err := incr(150 * time.Millisecond)
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond || elapsed > time.Second {
		t.Errorf("DoWithin returned after %v, bound 150ms", elapsed)
	}
	var te *TimeoutError
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotSent) || !errors.As(err, &te) || te.Bound != 150*time.Millisecond {
		t.Errorf("written call: err = %v, want a TimeoutError of 150ms not wrapping ErrNotSent", err)
	}
	if _, err := incr(50 * time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || !errors.Is(err, ErrNotSent) {
		t.Errorf("queued call: err = %v, want context.DeadlineExceeded and ErrNotSent", err)
	}
	// The context still ends a bounded call, whichever comes first.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err = c.DoWithin(short, time.Hour, []string{"INCR", "bounded"}, func(Reply) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &te) {
		t.Errorf("context ended first: err = %v, want the context's deadline", err)
	}

	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	// The written INCR ran (2), the queued ones did not; the timers of the
	// reused calls do not fire into later calls.
	for want := int64(3); want < 6; want++ {
		if n, err := incr(time.Second); err != nil || n != want {
			t.Errorf("INCR after resume = %d, %v; want %d", n, err, want)
		}
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("%d dials, want the connection kept", n)
	}
}

// ReadTimeout fails a batch whose replies do not come; the next batch
// redials.
func TestReadTimeout(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial, Conns: 1, ReadTimeout: 200 * time.Millisecond})
	ctx := timeout(t, 10*time.Second)
	if _, err := do(ctx, c, "PING"); err != nil {
		t.Fatal(err)
	}
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Resume() })
	start := time.Now()
	_, err := do(ctx, c, "PING")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("Do returned after %v, ReadTimeout 200ms", elapsed)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ErrNotSent) {
		t.Errorf("err = %v, want a read timeout not wrapping ErrNotSent", err)
	}
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	if _, err := do(ctx, c, "PING"); err != nil {
		t.Errorf("PING after resume: %v", err)
	}
	if n := d.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}

// A killed server fails the calls; once it is back, new connections (and
// their setup) carry them again.
func TestRedialAfterKill(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	var setups atomic.Int64
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial, Conns: 2, Setup: func(context.Context) ([][]string, error) {
		setups.Add(1)
		return [][]string{{"SELECT", "0"}}, nil
	}})
	ctx := timeout(t, 20*time.Second)
	ping := func() error { _, err := do(ctx, c, "PING"); return err }

	for range 4 {
		if err := ping(); err != nil {
			t.Fatal(err)
		}
	}
	srv.Kill()
	// Calls go to the connections in turn: the first on each finds it
	// broken, the second fails to dial.
	for i := range 4 {
		err := ping()
		switch {
		case err == nil:
			t.Fatalf("call %d succeeded with the server killed", i)
		case i >= 2 && !errors.Is(err, ErrNotSent):
			t.Errorf("call %d: %v, want a dial error wrapping ErrNotSent", i, err)
		}
	}
	srv.Restart(t)
	for i := range 4 {
		if err := ping(); err != nil {
			t.Errorf("call %d after restart: %v", i, err)
		}
	}
	if n, s := d.dials.Load(), setups.Load(); n != 4 || s != 4 {
		t.Errorf("%d dials and %d setups, want 4 each", n, s)
	}
}

// notifyConn signals on written after each write.
type notifyConn struct {
	net.Conn
	written chan<- struct{}
}

func (c *notifyConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	select {
	case c.written <- struct{}{}:
	default:
	}
	return n, err
}

// settle waits (a bounded while) for the number of goroutines to come
// back to base.
func settle(t *testing.T, base int) {
	t.Helper()
	n := 0
	for range 200 {
		if n = runtime.NumGoroutine(); n <= base {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d goroutines after Close, %d before New", n, base)
}

func TestClose(t *testing.T) {
	t.Run("call in flight", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		base := runtime.NumGoroutine()
		written := make(chan struct{}, 1)
		d := &testDialer{addr: srv.Addr, wrap: func(nc net.Conn) net.Conn { return &notifyConn{nc, written} }}
		c, err := New(Config{Dial: d.dial, Conns: 3, ReadTimeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx := timeout(t, 10*time.Second)
		if _, err := do(ctx, c, "PING"); err != nil {
			t.Fatal(err)
		}
		<-written
		if err := srv.Pause(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Resume() })
		errc := make(chan error, 1)
		go func() {
			_, err := do(ctx, c, "PING")
			errc <- err
		}()
		<-written
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if err == nil || errors.Is(err, ErrNotSent) {
				t.Errorf("call in flight: err = %v, want a connection error", err)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("the call in flight did not end at Close")
		}
		if _, err := do(ctx, c, "PING"); !errors.Is(err, ErrClosed) || !errors.Is(err, ErrNotSent) {
			t.Errorf("call after Close: err = %v, want ErrClosed and ErrNotSent", err)
		}
		if err := c.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		settle(t, base)
	})

	t.Run("dial in progress", func(t *testing.T) {
		base := runtime.NumGoroutine()
		dialing := make(chan struct{})
		c, err := New(Config{Conns: 1, DialTimeout: time.Minute, Dial: func(ctx context.Context) (net.Conn, error) {
			close(dialing) // a second dial would panic
			<-ctx.Done()
			return nil, ctx.Err()
		}})
		if err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 2)
		call := func() {
			_, err := do(context.Background(), c, "PING")
			errc <- err
		}
		go call()
		<-dialing
		go call() // queued behind the dial, or made after Close
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			select {
			case err := <-errc:
				if !errors.Is(err, ErrNotSent) {
					t.Errorf("err = %v, want ErrNotSent", err)
				}
			case <-time.After(2 * time.Second):
				t.Fatal("a call did not end at Close")
			}
		}
		settle(t, base)
	})
}

// dropConn reads and drops the reply of the first write holding marker,
// then closes the connection: the reply is lost after the command ran.
type dropConn struct {
	net.Conn
	marker  []byte
	dropped *atomic.Bool
}

func (c *dropConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if err != nil || !bytes.Contains(b, c.marker) || !c.dropped.CompareAndSwap(false, true) {
		return n, err
	}
	_ = c.Conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Conn.Read(make([]byte, 64))
	_ = c.Conn.Close()
	return n, nil
}

// A lost reply fails its call, which is not sent again.
func TestLostReply(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	const key = "lost-reply-marker"
	var dropped atomic.Bool
	d := &testDialer{addr: srv.Addr, wrap: func(nc net.Conn) net.Conn {
		return &dropConn{Conn: nc, marker: []byte(key), dropped: &dropped}
	}}
	c := newClient(t, Config{Dial: d.dial, Conns: 1})
	ctx := timeout(t, 10*time.Second)

	_, err := do(ctx, c, "INCR", key)
	if err == nil || errors.Is(err, ErrNotSent) {
		t.Fatalf("INCR with its reply lost: err = %v, want a connection error not wrapping ErrNotSent", err)
	}
	if !dropped.Load() {
		t.Fatal("the reply was not dropped")
	}
	if n, err := srv.Client(t).Get(ctx, key).Int(); err != nil || n != 1 {
		t.Errorf("%s = %d, %v; want 1 (run once)", key, n, err)
	}
	r, err := do(ctx, c, "INCR", key)
	if err != nil || r.Int != 2 {
		t.Errorf("next INCR = %d, %v; want 2", r.Int, err)
	}
	stats, err := srv.CommandStats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if stats["incr"] != 2 {
		t.Errorf("the server ran INCR %d times, want 2", stats["incr"])
	}
	if n := d.dials.Load(); n != 2 {
		t.Errorf("%d dials, want 2", n)
	}
}

// Do picks connections in turn with a uint32 counter; past 2^31 calls the
// counter must not become a negative index (as int(uint32) does where int
// has 32 bits).
func TestConnChoiceWraps(t *testing.T) {
	dialErr := errors.New("no server")
	c := newClient(t, Config{Conns: 3, Dial: func(context.Context) (net.Conn, error) { return nil, dialErr }})
	c.next.Store(math.MaxInt32 - 2)
	for range 6 {
		if _, err := do(context.Background(), c, "PING"); !errors.Is(err, dialErr) || !errors.Is(err, ErrNotSent) {
			t.Fatalf("err = %v, want the dial error and ErrNotSent", err)
		}
	}
	c.next.Store(math.MaxUint32 - 2)
	for range 6 {
		if _, err := do(context.Background(), c, "PING"); !errors.Is(err, dialErr) {
			t.Fatalf("err = %v, want the dial error", err)
		}
	}
}

// A serial Do allocates nothing in steady state.
func TestDoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	if err := srv.Client(t).Set(ctx, "bulk", strings.Repeat("v", 100), 0).Err(); err != nil {
		t.Fatal(err)
	}
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial, Conns: 1})
	tests := []struct {
		name string
		args []string
		size int
	}{
		{"PING", []string{"PING"}, 4},
		{"GET", []string{"GET", "bulk"}, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := 0
			fn := func(r Reply) error { size = len(r.Str); return nil }
			for _, bound := range []time.Duration{0, time.Second} {
				run := func() {
					if err := c.DoWithin(ctx, bound, tt.args, fn); err != nil {
						t.Fatal(err)
					}
				}
				for range 100 {
					run()
				}
				allocs := testing.AllocsPerRun(2000, run)
				t.Logf("%s, bound %v: %v allocations per call", tt.name, bound, allocs)
				if allocs > 0 {
					t.Errorf("%s, bound %v: %v allocations per call, want none", tt.name, bound, allocs)
				}
			}
			if size != tt.size {
				t.Errorf("reply of %d bytes, want %d", size, tt.size)
			}
		})
	}
}

func BenchmarkDo(b *testing.B) {
	srv := redistest.Start(b, redistest.Options{})
	d := &testDialer{addr: srv.Addr}
	c := newClient(b, Config{Dial: d.dial})
	ctx := context.Background()
	args := []string{"INCR", "bench"}
	fn := func(Reply) error { return nil }

	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := c.Do(ctx, args, fn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := c.Do(ctx, args, fn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
