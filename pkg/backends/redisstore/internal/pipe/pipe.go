// Package pipe is a pipelining Redis client for commands that must never be
// sent twice (redisstore's script calls): concurrent calls share one write
// and one read per batch on a few long-lived connections, with no goroutine
// or allocation per call or per batch.
//
// Each connection is served by one goroutine that takes every call queued
// on it, writes them in one system call, reads their replies in order and
// wakes their callers; calls queued meanwhile form the next batch. Calls of
// a Script (DoScript) in a batch go out as one command, whose reply is
// split among them. A call is written at most once: when its connection
// fails after the write, the call gets the error (the command may have
// run) and the connection is dialled afresh for the next batch. Calls never
// written (a failed dial, a closed client, a caller that gave up first) get
// an error wrapping ErrNotSent.
//
// It speaks RESP2 and understands the replies redisstore's calls get:
// simple strings, errors, integers and bulk strings. Any other reply fails
// the call (after being read in full, so the connection stays usable).
package pipe

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config's zero values.
const (
	DefaultConns        = 1
	DefaultReadTimeout  = 3 * time.Second
	DefaultWriteTimeout = 3 * time.Second
	DefaultDialTimeout  = 5 * time.Second
	DefaultGather       = time.Millisecond
)

// Errors of Do besides Redis's own (Error), the caller's context's and the
// connection's.
var (
	// ErrNotSent is wrapped by the errors of calls that never reached the
	// connection: the command did not run.
	ErrNotSent = errors.New("redis command not sent")
	// ErrClosed is returned for calls made or queued when Close was called.
	ErrClosed = errors.New("redis pipeline closed")
	// ErrProtocol is wrapped when the server's reply does not parse; the
	// connection is closed.
	ErrProtocol = errors.New("redis protocol error")
	// ErrUnexpected is wrapped when a reply parses but is of a type Reply
	// does not carry (an array); the connection stays up.
	ErrUnexpected = errors.New("unexpected redis reply")
)

// Error is an error reply from Redis ("-NOSCRIPT ...", "-ERR ..."). It
// implements go-redis's redis.Error, so that the helpers that classify
// go-redis's errors classify it too.
type Error string

func (e Error) Error() string { return string(e) }

// RedisError marks Error as a reply from the server (go-redis's redis.Error).
func (Error) RedisError() {}

// Config configures a Client. Zero durations and counts are the defaults
// above.
type Config struct {
	// Dial opens a connection to the server, TLS handshake included
	// (required). It must honour ctx's deadline (DialTimeout).
	Dial func(ctx context.Context) (net.Conn, error)
	// Setup, when set, returns the commands to run first on each new
	// connection (AUTH, SELECT); each must succeed. It is called at every
	// dial, so a password read from a file is read afresh.
	Setup func(ctx context.Context) ([][]string, error)
	// Conns is how many connections (each with its goroutine) carry the
	// calls; a call goes to one chosen in turn. One batches best.
	Conns int
	// DialTimeout bounds a dial and its setup; WriteTimeout a batch's write;
	// ReadTimeout the wait for a batch's replies once written.
	DialTimeout, WriteTimeout, ReadTimeout time.Duration
	// Gather: after a batch of n calls, a connection waits for n calls to
	// queue before the next batch, but sends what it has after a silence of
	// four times the last batch's round trip (at least 250µs, at most
	// Gather, default DefaultGather), or after two such silences in all.
	Gather time.Duration
}

// Client is a pipelining Redis client. It is safe for concurrent use.
type Client struct {
	cfg   Config
	conns []*conn
	next  atomic.Uint32
	calls sync.Pool
}

// New returns a Client; it does not contact the server (the first batch of
// each connection dials it).
func New(cfg Config) (*Client, error) {
	if cfg.Dial == nil {
		return nil, errors.New("pipe: no Dial")
	}
	if cfg.Conns < 0 || cfg.DialTimeout < 0 || cfg.WriteTimeout < 0 || cfg.ReadTimeout < 0 || cfg.Gather < 0 {
		return nil, errors.New("pipe: negative connection count or timeout")
	}
	cfg.Conns = cmp.Or(cfg.Conns, DefaultConns)
	cfg.DialTimeout = cmp.Or(cfg.DialTimeout, DefaultDialTimeout)
	cfg.WriteTimeout = cmp.Or(cfg.WriteTimeout, DefaultWriteTimeout)
	cfg.ReadTimeout = cmp.Or(cfg.ReadTimeout, DefaultReadTimeout)
	cfg.Gather = cmp.Or(cfg.Gather, DefaultGather)
	c := &Client{cfg: cfg, conns: make([]*conn, cfg.Conns)}
	c.calls.New = func() any { return &call{done: make(chan struct{}, 1)} }
	for i := range c.conns {
		c.conns[i] = newConn(c)
	}
	return c, nil
}

// Close fails the queued calls with ErrClosed, closes the connections (the
// calls in flight get their error) and stops the goroutines. Calls made
// afterwards fail with ErrClosed.
func (c *Client) Close() error {
	for _, cn := range c.conns {
		cn.close()
	}
	return nil
}

// Reply is a successful reply: Kind is '+' (a simple string, in Str), ':'
// (an integer, in Int) or '$' (a bulk string in Str; Nil for a null bulk
// string). Str is valid only during the callback Do passes it to.
type Reply struct {
	Kind byte
	Str  []byte
	Int  int64
	Nil  bool
}

// Do sends the command args once and, when its reply comes, calls fn with
// it. An error reply is returned as Error (fn is not called). When ctx ends
// first, Do returns ctx's error at once (wrapping ErrNotSent if the
// command was not written yet; otherwise it may still run) and the reply is
// dropped when it comes. args and the strings in it may not be modified
// until Do returns.
func (c *Client) Do(ctx context.Context, args []string, fn func(Reply) error) error {
	return c.DoWithin(ctx, 0, args, fn)
}

// DoWithin is Do bounded by d as well as by ctx (d <= 0: by ctx alone).
// When d passes first, it returns an error wrapping
// context.DeadlineExceeded, as a context with that timeout would, without
// the context's allocations: each call keeps its timer for the next.
func (c *Client) DoWithin(ctx context.Context, d time.Duration, args []string, fn func(Reply) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	k := c.calls.Get().(*call)
	k.args = append(k.args[:0], args...)
	return c.do(ctx, d, k, fn)
}

// A Script is a Lua script whose calls a batch merges: its calls made with
// DoScript, one key and one argument each, are sent as one "EVALSHA SHA n
// key1..keyn arg1..argn", and the script must answer with the calls'
// replies back to back, Width bytes each, in order (redisstore's each.lua).
// An error reply goes to every call of the merged command. A Script is
// compared by address: use one value per script.
type Script struct {
	SHA   string
	Width int
}

// DoScript is DoWithin of "EVALSHA s.SHA 1 key arg", which the batch it
// joins may merge with the other calls of s; fn gets this call's Width
// bytes of the reply. key and arg may not be modified until DoScript
// returns.
func (c *Client) DoScript(ctx context.Context, d time.Duration, s *Script, key, arg string, fn func(Reply) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrNotSent, err)
	}
	k := c.calls.Get().(*call)
	k.script, k.key, k.arg = s, key, arg
	return c.do(ctx, d, k, fn)
}

// do queues k and waits for its outcome, ctx's end or d (see DoWithin).
func (c *Client) do(ctx context.Context, d time.Duration, k *call, fn func(Reply) error) error {
	cn := c.conns[c.next.Add(1)%uint32(len(c.conns))] // not int(): negative past 2^31 where int has 32 bits
	if err := cn.enqueue(k); err != nil {
		c.release(k)
		return err
	}
	var expired <-chan time.Time
	if d > 0 {
		if k.timer == nil {
			k.timer = time.NewTimer(d)
		} else {
			k.timer.Reset(d)
		}
		expired = k.timer.C
	}
	var cause error
	select {
	case <-k.done:
	case <-expired:
		cause = &TimeoutError{d}
	case <-ctx.Done():
		cause = ctx.Err()
	}
	if d > 0 {
		k.timer.Stop() // before k may be released below: no stale tick (Go 1.23 timers)
	}
	if cause != nil {
		// The connection's goroutine releases an abandoned call.
		if k.state.CompareAndSwap(queued, abandoned) {
			return fmt.Errorf("%w: %w", ErrNotSent, cause)
		}
		if k.state.CompareAndSwap(written, abandoned) {
			return cause // it may run
		}
		<-k.done // finished meanwhile: its reply is there
	}
	err := k.err
	if err == nil {
		err = fn(k.reply)
	}
	c.release(k)
	return err
}

// TimeoutError is returned by DoWithin and DoScript when their bound passes
// first. It wraps context.DeadlineExceeded, and its Timeout method reports
// true.
type TimeoutError struct{ Bound time.Duration }

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("no reply within the call timeout of %v: %v", e.Bound, context.DeadlineExceeded)
}

// Unwrap returns context.DeadlineExceeded.
func (e *TimeoutError) Unwrap() error { return context.DeadlineExceeded }

// Timeout reports true.
func (e *TimeoutError) Timeout() bool { return true }

func (c *Client) release(k *call) {
	clear(k.args)
	str := k.reply.Str[:0]
	if cap(str) > maxPooled {
		str = nil // a huge reply's room is not kept
	}
	k.args, k.err, k.reply = k.args[:0], nil, Reply{Str: str}
	k.script, k.key, k.arg = nil, "", ""
	k.state.Store(queued)
	c.calls.Put(k)
}

// maxPooled is the largest reply buffer a released call keeps.
const maxPooled = 64 << 10

// Call states. A call is queued, then written; the connection's goroutine
// moves it to finished (and signals done) unless its caller abandoned it
// first, in which case the goroutine releases it.
const (
	queued int32 = iota
	written
	finished
	abandoned
)

type call struct {
	args []string // the command, unless script is set
	// A DoScript call: script's SHA, with key and arg.
	script   *Script
	key, arg string
	state    atomic.Int32
	done     chan struct{} // one token when finished
	reply    Reply
	err      error
	timer    *time.Timer // DoWithin's, made at its first use; stopped when idle
}

// conn is one connection and the goroutine that serves it.
type conn struct {
	c      *Client
	mu     sync.Mutex
	queue  []*call // waiting for the next batch
	busy   bool    // the goroutine is running batches (or was woken to)
	want   int     // > 0: the goroutine waits for the queue to reach it
	closed bool
	wake   chan struct{}
	quit   chan struct{}

	// Owned by the goroutine; nc is set and cleared under mu, for close.
	nc    net.Conn
	br    *bufio.Reader
	wbuf  []byte
	batch []*call
	rtt   time.Duration // the last batch's, from its write to its last reply
	// A batch's commands in write order: cmds[j] covers order[lo:hi], one
	// call, or every call of one Script; merged reads a merged reply.
	order  []*call
	cmds   []command
	merged Reply
}

// command is one command of a batch: a call's, or several calls of script
// merged into one.
type command struct {
	script *Script
	lo, hi int
}

func newConn(c *Client) *conn {
	cn := &conn{c: c, wake: make(chan struct{}, 1), quit: make(chan struct{})}
	go cn.serve()
	return cn
}

// enqueue queues k for the next batch, waking the goroutine if it is idle.
func (cn *conn) enqueue(k *call) error {
	cn.mu.Lock()
	if cn.closed {
		cn.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNotSent, ErrClosed)
	}
	cn.queue = append(cn.queue, k)
	wake := false
	switch {
	case !cn.busy:
		cn.busy, wake = true, true
	case cn.want > 0 && len(cn.queue) >= cn.want:
		cn.want, wake = 0, true
	}
	cn.mu.Unlock()
	if wake {
		select {
		case cn.wake <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
	return nil
}

func (cn *conn) close() {
	cn.mu.Lock()
	if cn.closed {
		cn.mu.Unlock()
		return
	}
	cn.closed = true
	q := cn.queue
	cn.queue = nil
	if cn.nc != nil {
		_ = cn.nc.Close() // ends a batch in flight: its calls get the error
	}
	cn.mu.Unlock()
	close(cn.quit)
	for _, k := range q {
		cn.finish(k, fmt.Errorf("%w: %w", ErrNotSent, ErrClosed))
	}
}

// serve runs batches while calls are queued, and sleeps otherwise. After
// a batch of n calls it waits a little for n calls to queue (the callers it
// just answered come back with their next command; see gather), so that
// batches stay as large as the load allows.
func (cn *conn) serve() {
	gather := time.NewTimer(time.Hour)
	gather.Stop()
	for {
		select {
		case <-cn.wake:
		case <-cn.quit:
			return
		}
		n := 0 // the last batch's size
		for {
			cn.mu.Lock()
			if len(cn.queue) < n && !cn.closed {
				cn.gather(n, gather)
			}
			if len(cn.queue) == 0 || cn.closed {
				cn.busy = false
				cn.mu.Unlock()
				break
			}
			// Swap the queue with the last batch's (emptied) slice.
			cn.batch, cn.queue = cn.queue, cn.batch[:0]
			cn.mu.Unlock()
			n = len(cn.batch)
			cn.run()
			clear(cn.batch)
		}
	}
}

// gather waits, with cn.mu held (released while waiting), for the queue
// to reach n calls: it gives up after a gap (see minGap) with no new call,
// or after maxGaps such gaps in all.
func (cn *conn) gather(n int, t *time.Timer) {
	cn.want = n
	woken := false
	for range maxGaps {
		before := len(cn.queue)
		cn.mu.Unlock()
		t.Reset(min(max(4*cn.rtt, minGap), cn.c.cfg.Gather))
		select {
		case <-cn.wake:
			woken = true
		case <-t.C:
		case <-cn.quit:
			woken = true
		}
		t.Stop()
		cn.mu.Lock()
		if woken || len(cn.queue) == before || len(cn.queue) >= n {
			break
		}
	}
	if !woken && cn.want == 0 {
		// A call filled the batch as the gap ended: its enqueue claimed the
		// wake-up (want 0) and sends a token, which would end the next
		// gather at once. Take it now (it comes right after enqueue's
		// unlock).
		<-cn.wake
	}
	cn.want = 0
}

// A gather waits for silences of four times the last batch's round trip,
// but at least minGap and at most Config.Gather, and maxGaps of them at
// most: under load the callers come back spread over several round trips
// (BENCHMARKS.md), and when Redis answers quickly a long wait would cost
// callers more than batching saves.
const (
	minGap  = 250 * time.Microsecond
	maxGaps = 2
)

// finish delivers k's outcome (err, or the reply already in k) to its
// caller, or releases k if the caller has gone.
func (cn *conn) finish(k *call, err error) {
	k.err = err
	if k.state.CompareAndSwap(queued, finished) || k.state.CompareAndSwap(written, finished) {
		k.done <- struct{}{}
		return
	}
	cn.c.release(k)
}

// run writes cn.batch and reads its replies.
func (cn *conn) run() {
	if cn.nc == nil {
		if err := cn.dial(); err != nil {
			for _, k := range cn.batch {
				cn.finish(k, fmt.Errorf("%w: %w", ErrNotSent, err))
			}
			return
		}
	}
	live := cn.batch[:0]
	for _, k := range cn.batch {
		if !k.state.CompareAndSwap(queued, written) {
			cn.c.release(k) // abandoned before it was written
			continue
		}
		live = append(live, k)
	}
	if len(live) == 0 {
		return
	}
	cn.plan(live)
	cn.wbuf = cn.wbuf[:0]
	for _, c := range cn.cmds {
		if c.script == nil {
			cn.wbuf = appendCommand(cn.wbuf, cn.order[c.lo].args)
		} else {
			cn.wbuf = appendScript(cn.wbuf, c.script.SHA, cn.order[c.lo:c.hi])
		}
	}
	start := time.Now()
	_ = cn.nc.SetWriteDeadline(start.Add(cn.c.cfg.WriteTimeout))
	if _, err := cn.nc.Write(cn.wbuf); err != nil {
		cn.fail(cn.order, err)
		return
	}
	_ = cn.nc.SetReadDeadline(time.Now().Add(cn.c.cfg.ReadTimeout))
	demoted := false
	for _, c := range cn.cmds {
		calls := cn.order[c.lo:c.hi]
		r := &calls[0].reply
		if c.script != nil {
			r = &cn.merged
		}
		err := readReply(cn.br, r)
		switch {
		case err == nil && c.script != nil:
			cn.split(c.script, calls)
			if cap(cn.merged.Str) > maxPooled {
				cn.merged.Str = nil // a huge reply's room is not kept
			}
		case err == nil:
			cn.finish(calls[0], nil)
		case isReplyError(err): // not errors.As: its target would escape, an allocation per reply
			demoted = demoted || strings.HasPrefix(err.Error(), "READONLY")
			cn.finishAll(calls, err) // the connection is still in step
		case errors.Is(err, ErrUnexpected):
			cn.finishAll(calls, err)
		default:
			cn.fail(cn.order[c.lo:], err)
			return
		}
	}
	cn.rtt = time.Since(start)
	if demoted {
		cn.hangUp() // a replica now: the next batch dials the master afresh
	}
}

// plan orders live calls into commands: one per Script, with all of its
// calls in the order they came, then one per other call.
func (cn *conn) plan(live []*call) {
	cn.order, cn.cmds = cn.order[:0], cn.cmds[:0]
	for i, k := range live {
		if k.script == nil || cn.planned(k.script) {
			continue
		}
		lo := len(cn.order)
		for _, m := range live[i:] {
			if m.script == k.script {
				cn.order = append(cn.order, m)
			}
		}
		cn.cmds = append(cn.cmds, command{script: k.script, lo: lo, hi: len(cn.order)})
	}
	for _, k := range live {
		if k.script == nil {
			cn.order = append(cn.order, k)
			cn.cmds = append(cn.cmds, command{lo: len(cn.order) - 1, hi: len(cn.order)})
		}
	}
}

// planned reports whether s has its command already.
func (cn *conn) planned(s *Script) bool {
	for _, c := range cn.cmds {
		if c.script == s {
			return true
		}
	}
	return false
}

// split gives each of calls its Width bytes of the merged reply, or, when
// the reply is not a string of that many bytes per call, an error wrapping
// ErrUnexpected.
func (cn *conn) split(s *Script, calls []*call) {
	r := &cn.merged
	if r.Kind != '$' || r.Nil || len(r.Str) != s.Width*len(calls) {
		cn.finishAll(calls, fmt.Errorf("%w: a reply of type %q and %d bytes for %d merged calls of %d bytes", ErrUnexpected, r.Kind, len(r.Str), len(calls), s.Width))
		return
	}
	for i, k := range calls {
		k.reply = Reply{Kind: '$', Str: append(k.reply.Str[:0], r.Str[i*s.Width:(i+1)*s.Width]...)}
		cn.finish(k, nil)
	}
}

// finishAll gives err to every one of calls.
func (cn *conn) finishAll(calls []*call, err error) {
	for _, k := range calls {
		cn.finish(k, err)
	}
}

// fail closes the connection after an I/O or protocol error and gives the
// error to calls, which were written (they may have run).
func (cn *conn) fail(calls []*call, err error) {
	cn.hangUp()
	err = fmt.Errorf("redis pipeline connection: %w", err)
	for _, k := range calls {
		cn.finish(k, err)
	}
}

// hangUp closes the connection; the next batch dials afresh.
func (cn *conn) hangUp() {
	_ = cn.nc.Close()
	cn.mu.Lock()
	cn.nc, cn.br = nil, nil
	cn.mu.Unlock()
}

// dial opens the connection and runs Config.Setup's commands on it.
func (cn *conn) dial() error {
	cfg := &cn.c.cfg
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	go func() { // Close ends a dial in progress
		select {
		case <-cn.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	nc, err := cfg.Dial(ctx)
	if err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	br := bufio.NewReaderSize(nc, 16<<10)
	if cfg.Setup != nil {
		if err := setup(ctx, nc, br, cfg.Setup); err != nil {
			_ = nc.Close()
			return err
		}
	}
	cn.mu.Lock()
	defer cn.mu.Unlock()
	if cn.closed {
		_ = nc.Close()
		return ErrClosed
	}
	cn.nc, cn.br = nc, br
	return nil
}

// setup runs the setup commands on a new connection, in one write.
func setup(ctx context.Context, nc net.Conn, br *bufio.Reader, cmds func(context.Context) ([][]string, error)) error {
	list, err := cmds(ctx)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if len(list) == 0 {
		return nil
	}
	deadline, _ := ctx.Deadline()
	_ = nc.SetDeadline(deadline)
	var b []byte
	for _, args := range list {
		b = appendCommand(b, args)
	}
	if _, err := nc.Write(b); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	var errs []error
	for _, args := range list {
		var r Reply
		if err := readReply(br, &r); err != nil {
			var e Error
			if !errors.As(err, &e) {
				return fmt.Errorf("setup: %w", err)
			}
			errs = append(errs, fmt.Errorf("setup %s: %w", args[0], e)) // never the arguments: AUTH's are secret
		}
	}
	_ = nc.SetDeadline(time.Time{})
	return errors.Join(errs...)
}

// appendCommand appends args as a RESP array of bulk strings.
func appendCommand(b []byte, args []string) []byte {
	b = appendLen(b, '*', len(args))
	for _, a := range args {
		b = appendBulk(b, a)
	}
	return b
}

// appendScript appends "EVALSHA sha n key1..keyn arg1..argn" of calls.
func appendScript(b []byte, sha string, calls []*call) []byte {
	b = appendLen(b, '*', 3+2*len(calls))
	b = appendBulk(b, "evalsha")
	b = appendBulk(b, sha)
	var num [20]byte
	b = appendBulk(b, strconv.AppendInt(num[:0], int64(len(calls)), 10))
	for _, k := range calls {
		b = appendBulk(b, k.key)
	}
	for _, k := range calls {
		b = appendBulk(b, k.arg)
	}
	return b
}

// appendLen appends a RESP length line: kind ('*' or '$'), n, CRLF.
func appendLen(b []byte, kind byte, n int) []byte {
	b = append(b, kind)
	b = strconv.AppendInt(b, int64(n), 10)
	return append(b, '\r', '\n')
}

// appendBulk appends s as a bulk string.
func appendBulk[T string | []byte](b []byte, s T) []byte {
	b = appendLen(b, '$', len(s))
	b = append(b, s...)
	return append(b, '\r', '\n')
}
