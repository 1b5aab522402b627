// Package pgstore is the PostgreSQL limiter.Store: every algorithm of
// pkg/limiter runs in one PL/pgSQL function over arrays (take_one for a
// call of one request), so one Take is one round trip whatever its number
// of requests, atomic under concurrency from
// any number of extauthz replicas, decided on the database server's clock.
//
// Counters live in one table (one row per key) in their own schema, created
// and upgraded by Migrate; expired rows are deleted in small batches by
// Cleanup, in the background when configured. See README.md for the table
// layout, indexes, sizing and the clock.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// ErrBadReply is wrapped by Take when the database answers something the
// take function never returns (arrays of the wrong length, negative values).
var ErrBadReply = errors.New("unexpected reply from postgres")

// Store is a limiter.Store backed by PostgreSQL. It is safe for concurrent
// use.
type Store struct {
	pool     *pgxpool.Pool
	schema   string
	settings Settings // with defaults
	takeSQL  string   // take: any number of requests, in arrays
	oneSQL   string   // take_one: one request
	addr     string

	// ready is set once the schema was found at SchemaVersion (or
	// migrated); until then Take and Ping check it first.
	ready    atomic.Bool
	checking chan struct{} // a one-slot semaphore: one check at a time

	stop chan struct{} // closes the cleanup loop; nil without one
	done chan struct{} // closed when the loop has returned
	once sync.Once
}

var _ limiter.Store = (*Store)(nil)

// Connect builds a Store's connection pool without contacting the database
// or checking the schema, and starts no goroutine: for maintenance
// (Migrate, Cleanup, Version) such as the migrate and cleanup commands.
// Serving uses Open.
func Connect(ctx context.Context, st Settings) (*Store, error) {
	if err := st.Validate(); err != nil { // fills in the defaults
		return nil, errorf("settings: %w", err)
	}
	dsn, err := st.ResolveDSN()
	if err != nil {
		return nil, errorf("settings: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's message may quote the DSN; say only which setting.
		return nil, errorf("parse the dsn: invalid connection string or URL")
	}
	if st.MaxConns > 0 {
		cfg.MaxConns = st.MaxConns
	}
	if st.MinConns > 0 {
		cfg.MinConns = st.MinConns
	}
	cfg.ConnConfig.ConnectTimeout = st.ConnectTimeout
	if st.Tracer != nil {
		cfg.ConnConfig.Tracer = st.Tracer
	}
	rp := cfg.ConnConfig.RuntimeParams
	rp["statement_timeout"] = strconv.FormatInt(st.StatementTimeout.Milliseconds(), 10)
	if rp["application_name"] == "" {
		rp["application_name"] = "extauthz"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, errorf("open pool: %w", err)
	}
	q := quoteIdent(st.Schema)
	return &Store{
		pool:     pool,
		schema:   st.Schema,
		settings: st,
		checking: make(chan struct{}, 1),
		takeSQL:  "SELECT allowed, remaining, reset_after, retry_after FROM " + q + ".take($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		oneSQL:   "SELECT allowed, remaining, reset_after, retry_after FROM " + q + ".take_one($1, $2, $3, $4, $5, $6, $7, $8, $9)",
		addr:     fmt.Sprintf("%s:%d/%s", cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database),
	}, nil
}

// Open builds a Store for serving: Connect, then the schema check (or, with
// Settings.AutoMigrate, Migrate), then the background cleanup unless
// Settings.CleanupInterval is negative.
//
// Open refuses (an error wrapping ErrSchema) a database whose schema is
// missing, older or newer than SchemaVersion. When the database cannot be
// reached, Open still returns the Store (a sidecar must start while its
// database is down; the failover chain serves meanwhile) and the check runs
// on the first Ping or Take that reaches it, which fail with ErrSchema
// until the schema is right. Close the Store when done.
func Open(ctx context.Context, st Settings) (*Store, error) {
	s, err := Connect(ctx, st)
	if err != nil {
		return nil, err
	}
	if err := s.prepare(ctx); err != nil && errors.Is(err, ErrSchema) {
		s.pool.Close()
		return nil, err
	}
	if s.settings.CleanupInterval > 0 {
		s.startCleanup()
	}
	return s, nil
}

// prepare checks the schema (or migrates it) unless that was done.
func (s *Store) prepare(ctx context.Context) error {
	if s.ready.Load() {
		return nil
	}
	// Calls wait for a check in progress only as long as their context
	// allows: while the database is down a check takes up to the connect
	// timeout, far longer than a rate-limit call may.
	select {
	case s.checking <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.checking }()
	if s.ready.Load() {
		return nil
	}
	if s.settings.AutoMigrate {
		_, _, err := s.Migrate(ctx)
		return err
	}
	if err := s.CheckSchema(ctx); err != nil {
		return err
	}
	s.ready.Store(true)
	return nil
}

// String describes the store for logs, e.g. "postgres db:5432/app". It
// never includes credentials.
func (s *Store) String() string { return "postgres " + s.addr }

// Addr is String without the leading "postgres ", for the health table.
func (s *Store) Addr() string { return s.addr }

// Close stops the background cleanup (waiting for a batch in progress) and
// closes the pool. It is safe to call more than once.
func (s *Store) Close() error {
	s.once.Do(func() {
		if s.stop != nil {
			close(s.stop)
			<-s.done
		}
		s.pool.Close()
	})
	return nil
}

// Ping checks that the database answers and, until it has succeeded once,
// that the schema is right (see Open). It is the failover chain's health
// probe (chain.Pinger).
func (s *Store) Ping(ctx context.Context) error {
	if err := s.prepare(ctx); err != nil {
		return errorf("ping: %w", err)
	}
	if err := s.pool.Ping(ctx); err != nil {
		return errorf("ping: %w", err)
	}
	return nil
}

// PoolStat is a snapshot of the connection pool, for metrics.
type PoolStat struct {
	Acquired, Idle, Total, Max int32
}

// PoolStat returns the pool's current usage.
func (s *Store) PoolStat() PoolStat {
	st := s.pool.Stat()
	return PoolStat{Acquired: st.AcquiredConns(), Idle: st.IdleConns(), Total: st.TotalConns(), Max: st.MaxConns()}
}

// Take implements limiter.Store. It validates reqs (limiter.CheckRequests)
// and calls the take function once with every request: one round trip
// (plus, on a new connection, the statement's preparation; and until the
// schema has been checked once, that check).
func (s *Store) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	if err := limiter.CheckRequests(reqs, res); err != nil {
		return errorf("take %d keys: %w", len(reqs), err)
	}
	if len(reqs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return errorf("take %d keys: %w", len(reqs), err)
	}
	if err := s.prepare(ctx); err != nil {
		return errorf("take %d keys: %w", len(reqs), err)
	}
	start := time.Now()
	err := s.take(ctx, mode, reqs, res)
	if s.settings.OnCall != nil {
		s.settings.OnCall(time.Since(start), err)
	}
	if err != nil {
		return errorf("take %d keys: %w", len(reqs), err)
	}
	return nil
}

// take sends the call and decodes the reply into res.
func (s *Store) take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	now := s.clock()
	m := int32(0)
	if mode == limiter.CountIfAllAllowed {
		m = 1
	}
	if len(reqs) == 1 {
		return s.takeOne(ctx, m, now, &reqs[0], &res[0])
	}
	n := len(reqs)
	keys := make([][]byte, n)
	algs := make([]int32, n)
	requests, periods, bursts, hits := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	shadow := make([]bool, n)
	for i := range reqs {
		r := &reqs[i]
		keys[i] = []byte(r.Key)
		algs[i] = int32(r.Limit.Algorithm)
		requests[i], periods[i], bursts[i], hits[i] = r.Limit.Requests, int64(r.Limit.Period), r.Limit.Burst, r.Hits
		shadow[i] = r.Shadow
	}
	var allowed []bool
	var remaining, reset, retry []int64
	err := s.pool.QueryRow(ctx, s.takeSQL, keys, algs, requests, periods, bursts, hits, shadow, m, now).
		Scan(&allowed, &remaining, &reset, &retry)
	if err != nil {
		return err
	}
	if len(allowed) != n || len(remaining) != n || len(reset) != n || len(retry) != n {
		return fmt.Errorf("%w: arrays of %d, %d, %d, %d elements for %d requests", ErrBadReply, len(allowed), len(remaining), len(reset), len(retry), n)
	}
	for i := range reqs {
		if err := result(&reqs[i], allowed[i], remaining[i], reset[i], retry[i], &res[i]); err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
	}
	return nil
}

// takeOne is take for one request, through take_one.
func (s *Store) takeOne(ctx context.Context, mode int32, now *int64, r *limiter.Request, res *limiter.Result) error {
	var allowed bool
	var remaining, reset, retry int64
	err := s.pool.QueryRow(ctx, s.oneSQL, []byte(r.Key), int32(r.Limit.Algorithm), r.Limit.Requests, int64(r.Limit.Period),
		r.Limit.Burst, r.Hits, r.Shadow, mode, now).Scan(&allowed, &remaining, &reset, &retry)
	if err != nil {
		return err
	}
	return result(r, allowed, remaining, reset, retry, res)
}

// clock returns the test clock's time in Unix ns (Settings.Now), or nil
// for the database server's clock.
func (s *Store) clock() *int64 {
	if s.settings.Now == nil {
		return nil
	}
	ns := s.settings.Now().UnixNano()
	return &ns
}

// result fills res with the database's answer for r, which it checks.
func result(r *limiter.Request, allowed bool, remaining, reset, retry int64, res *limiter.Result) error {
	if remaining < 0 || reset < 0 || retry < 0 {
		return fmt.Errorf("%w: negative value in (%d, %d, %d)", ErrBadReply, remaining, reset, retry)
	}
	*res = limiter.Result{
		Allowed:    allowed,
		Limit:      r.Limit.Capacity(),
		Remaining:  remaining,
		ResetAfter: time.Duration(reset),
		RetryAfter: time.Duration(retry),
	}
	return nil
}
