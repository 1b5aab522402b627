package pgstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/secret"
)

// TestReplicasShareExactCounts runs three Stores (three replicas, each
// with its own pool) on one schema: under concurrency they admit exactly
// the limit of a fixed window, and all-or-nothing calls stay atomic; calls
// of one request (take_one) admit exactly the limit of every algorithm.
func TestReplicasShareExactCounts(t *testing.T) {
	srv := pgtest.Shared(t)
	first := openStore(t, srv, Settings{})
	replicas := []*Store{first,
		openStore(t, srv, Settings{Schema: first.schema}),
		openStore(t, srv, Settings{Schema: first.schema})}
	month := limiter.Limit{Requests: 150, Period: 1000*time.Hour + 7*time.Second}
	day := limiter.Limit{Requests: 10_000, Period: 1000*time.Hour + 7*time.Second, Algorithm: limiter.SlidingWindow}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 12 {
		s := replicas[g%3]
		wg.Go(func() {
			reqs := []limiter.Request{{Key: "month", Limit: month, Hits: 1}, {Key: "day", Limit: day, Hits: 1}}
			if g%2 == 1 {
				reqs[0], reqs[1] = reqs[1], reqs[0]
			}
			res := make([]limiter.Result, 2)
			for range 20 {
				if err := s.Take(context.Background(), limiter.CountIfAllAllowed, reqs, res); err != nil {
					t.Errorf("Take: %v", err)
					return
				}
				if res[0].Allowed && res[1].Allowed {
					admitted.Add(1)
				} else {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if got := admitted.Load(); got != month.Requests {
		t.Fatalf("12 goroutines on 3 replicas x 20 calls admitted %d, want exactly %d (refused %d)", got, month.Requests, refused.Load())
	}
	// day counted only the admitted calls, as seen from every replica.
	for i, s := range replicas {
		res := make([]limiter.Result, 1)
		if err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: "day", Limit: day}}, res); err != nil {
			t.Fatal(err)
		}
		if want := day.Requests - month.Requests; res[0].Remaining != want {
			t.Errorf("replica %d: day remaining %d, want %d", i, res[0].Remaining, want)
		}
	}

	// One-request calls (take_one), 240 per algorithm for a limit of 100:
	// exactly 100 admitted.
	for _, alg := range []limiter.Algorithm{limiter.FixedWindow, limiter.SlidingWindow, limiter.TokenBucket} {
		l := limiter.Limit{Requests: 100, Period: 1000 * time.Hour, Algorithm: alg}
		var admitted atomic.Int64
		for g := range 12 {
			s := replicas[g%3]
			wg.Go(func() {
				res := make([]limiter.Result, 1)
				for range 20 {
					if err := s.Take(context.Background(), limiter.CountAll, []limiter.Request{{Key: "one " + alg.String(), Limit: l, Hits: 1}}, res); err != nil {
						t.Errorf("Take: %v", err)
						return
					}
					if res[0].Allowed {
						admitted.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if got := admitted.Load(); got != l.Requests {
			t.Errorf("%s: 240 one-request calls on 3 replicas admitted %d, want exactly %d", alg, got, l.Requests)
		}
	}
}

// takeRetry calls Take, retrying for a while when it fails (connections
// broken by a server restart are replaced on the next acquire).
func takeRetry(t *testing.T, s *Store, reqs []limiter.Request) []limiter.Result {
	t.Helper()
	res := make([]limiter.Result, len(reqs))
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.Take(context.Background(), limiter.CountAll, reqs, res); err == nil {
			return res
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Take: %v", err)
	return nil
}

// TestServerRestartKeepsCounts checks that counts survive a clean restart
// and a crash (immediate shutdown, then recovery) of PostgreSQL, and that
// the Store reconnects by itself.
func TestServerRestartKeepsCounts(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	s := openStore(t, srv, Settings{})
	l := limiter.Limit{Requests: 10, Period: 1000*time.Hour + 7*time.Second}
	req := []limiter.Request{{Key: "quota", Limit: l, Hits: 3}}
	if r := takeRetry(t, s, req); r[0].Remaining != 7 {
		t.Fatalf("before restart: remaining %d, want 7", r[0].Remaining)
	}
	srv.Restart(t)
	if r := takeRetry(t, s, req); r[0].Remaining != 4 {
		t.Fatalf("after restart: remaining %d, want 4", r[0].Remaining)
	}
	srv.Kill()
	if err := s.Ping(context.Background()); err == nil {
		t.Fatal("Ping with the server down: got nil error, want one")
	}
	srv.Restart(t)
	if r := takeRetry(t, s, req); r[0].Remaining != 1 {
		t.Fatalf("after crash and restart: remaining %d, want 1", r[0].Remaining)
	}
	// A new replica (a restarted extauthz) sees the same count.
	s2 := openStore(t, srv, Settings{Schema: s.schema})
	if r := takeRetry(t, s2, []limiter.Request{{Key: "quota", Limit: l}}); r[0].Remaining != 1 {
		t.Fatalf("new store: remaining %d, want 1", r[0].Remaining)
	}
}

// queryCounter counts the queries a pool sends (pgx.QueryTracer).
type queryCounter struct {
	n    atomic.Int64
	last atomic.Value // string
}

func (q *queryCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	q.n.Add(1)
	q.last.Store(d.SQL)
	return ctx
}

func (q *queryCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// TestOneQueryPerTake checks that a Take of many requests is one query.
func TestOneQueryPerTake(t *testing.T) {
	srv := pgtest.Shared(t)
	qc := &queryCounter{}
	s := openStore(t, srv, Settings{Tracer: qc, MaxConns: 1})
	reqs := make([]limiter.Request, 9)
	for i := range reqs {
		reqs[i] = limiter.Request{Key: string(rune('a' + i%5)), Limit: limiter.Limit{Requests: 5, Period: time.Hour, Algorithm: limiter.Algorithm(i % 3)}, Hits: 1}
	}
	res := make([]limiter.Result, len(reqs))
	if got := s.PoolStat().Max; got != 1 {
		t.Errorf("PoolStat().Max: got %d, want 1 (MaxConns)", got)
	}
	for call := range 4 {
		n := len(reqs)
		if call == 3 {
			n = 1 // take_one
		}
		before := qc.n.Load()
		if err := s.Take(context.Background(), limiter.CountIfAllAllowed, reqs[:n], res[:n]); err != nil {
			t.Fatal(err)
		}
		if got := qc.n.Load() - before; got != 1 {
			t.Errorf("call %d: %d queries for one Take of %d requests, want 1 (last %v)", call, got, n, qc.last.Load())
		}
	}
}

// TestMigrateTwiceAndConcurrently checks that Migrate is idempotent and
// that concurrent migrations of one schema apply it exactly once.
func TestMigrateTwiceAndConcurrently(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx := context.Background()
	connect := func(schema string) *Store {
		s, err := Connect(ctx, Settings{DSN: secret.String(srv.DSN("postgres")), Schema: schema, StatementTimeout: 10 * time.Second})
		if err != nil {
			t.Fatalf("Connect: %v", err)
		}
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	s := connect("twice")
	for i, want := range []int{0, SchemaVersion} {
		from, to, err := s.Migrate(ctx)
		if err != nil || from != want || to != SchemaVersion {
			t.Fatalf("Migrate #%d: got (%d, %d, %v), want (%d, %d, nil)", i+1, from, to, err, want, SchemaVersion)
		}
	}
	if err := s.CheckSchema(ctx); err != nil {
		t.Fatalf("CheckSchema after Migrate: %v", err)
	}

	const n = 8
	var wg sync.WaitGroup
	froms := make([]int, n)
	errs := make([]error, n)
	for i := range n {
		st := connect("concurrent")
		wg.Go(func() { froms[i], _, errs[i] = st.Migrate(ctx) })
	}
	wg.Wait()
	fresh := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("concurrent Migrate %d: %v", i, errs[i])
		}
		if froms[i] == 0 {
			fresh++
		}
	}
	if fresh != 1 {
		t.Errorf("%d of %d concurrent migrations started from version 0, want exactly 1", fresh, n)
	}
	var rows int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM "concurrent".schema_migrations`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != SchemaVersion {
		t.Errorf("schema_migrations rows: %d, want %d", rows, SchemaVersion)
	}
}

// TestOpenRefusesWrongSchema checks that Open refuses a missing, old or
// newer schema with a message naming the migrate command, and that
// AutoMigrate migrates instead.
func TestOpenRefusesWrongSchema(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx := context.Background()
	dsn := srv.DSN("postgres")
	open := func(schema string, auto bool) error {
		s, err := Open(ctx, Settings{DSN: secret.String(dsn), Schema: schema, AutoMigrate: auto, CleanupInterval: -1})
		if err == nil {
			_ = s.Close()
		}
		return err
	}
	err := open("missing", false)
	if !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "extauthz migrate --config FILE") {
		t.Errorf("Open on a missing schema: got %v, want ErrSchema saying to run extauthz migrate --config FILE", err)
	}

	// An old schema: its version rows say less than SchemaVersion.
	m := openStore(t, srv, Settings{Schema: "old", AutoMigrate: true})
	if _, err := m.pool.Exec(ctx, `DELETE FROM "old".schema_migrations WHERE version = $1`, SchemaVersion); err != nil {
		t.Fatal(err)
	}
	if err := open("old", false); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "extauthz migrate") {
		t.Errorf("Open on an old schema: got %v, want ErrSchema saying to run extauthz migrate", err)
	}

	// A newer schema (a later extauthz migrated it): refused, also by Migrate.
	n := openStore(t, srv, Settings{Schema: "newer", AutoMigrate: true})
	if _, err := n.pool.Exec(ctx, `INSERT INTO "newer".schema_migrations (version, name) VALUES ($1, 'future')`, SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	if err := open("newer", false); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "newer") {
		t.Errorf("Open on a newer schema: got %v, want ErrSchema saying it is newer", err)
	}
	if err := open("newer", true); !errors.Is(err, ErrSchema) {
		t.Errorf("Open with AutoMigrate on a newer schema: got %v, want ErrSchema", err)
	}

	// A newer schema whose migrations since only added (compatible_from):
	// served as it is, and Migrate leaves it alone.
	a := openStore(t, srv, Settings{Schema: "additive", AutoMigrate: true})
	if _, err := a.pool.Exec(ctx, `INSERT INTO "additive".schema_migrations (version, name, compatible_from) VALUES ($1, 'future', $2)`, SchemaVersion+1, SchemaVersion); err != nil {
		t.Fatal(err)
	}
	if err := open("additive", false); err != nil {
		t.Errorf("Open on a newer, additive schema: %v", err)
	}
	if from, to, err := a.Migrate(ctx); err != nil || from != SchemaVersion+1 || to != SchemaVersion+1 {
		t.Errorf("Migrate on a newer, additive schema: (%d, %d, %v), want (%d, %d, nil)", from, to, err, SchemaVersion+1, SchemaVersion+1)
	}

	if err := open("auto", true); err != nil {
		t.Errorf("Open with AutoMigrate on a missing schema: %v", err)
	}
	if err := open("auto", false); err != nil {
		t.Errorf("Open after AutoMigrate: %v", err)
	}
}

// TestMigrateFromVersion1 upgrades a schema made by version 1 alone (as an
// earlier extauthz left it, with a count in it) to SchemaVersion: the count
// carries over, and one-request calls (take_one, version 2) see it.
func TestMigrateFromVersion1(t *testing.T) {
	srv := pgtest.Shared(t)
	ctx := context.Background()
	s, err := Connect(ctx, Settings{DSN: secret.String(srv.DSN("postgres")), Schema: newSchema(), CleanupInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	q := quoteIdent(s.schema)
	for _, st := range []string{
		"CREATE SCHEMA " + q,
		"CREATE TABLE " + q + ".schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
		strings.ReplaceAll(migrations[0].SQL, "{{schema}}", q),
		"INSERT INTO " + q + ".schema_migrations (version, name) VALUES (1, 'counters')",
	} {
		if _, err := s.pool.Exec(ctx, st); err != nil {
			t.Fatalf("%.60s: %v", st, err)
		}
	}
	// One hit of 5 per hour on key k, through version 1's take.
	if _, err := s.pool.Exec(ctx, "SELECT * FROM "+q+".take($1, '{0}', '{5}', '{3600000000000}', '{0}', '{1}', '{f}', 0, NULL)", [][]byte{[]byte("k")}); err != nil {
		t.Fatal(err)
	}
	if err := s.CheckSchema(ctx); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), "version 1, this extauthz needs") {
		t.Errorf("CheckSchema on version 1 (no compatible_from column yet): %v, want ErrSchema naming version 1", err)
	}
	if from, to, err := s.Migrate(ctx); err != nil || from != 1 || to != SchemaVersion {
		t.Fatalf("Migrate: (%d, %d, %v), want (1, %d, nil)", from, to, err, SchemaVersion)
	}
	var compat int
	if err := s.pool.QueryRow(ctx, "SELECT compatible_from FROM "+q+".schema_migrations WHERE version = 2").Scan(&compat); err != nil || compat != 1 {
		t.Errorf("version 2's compatible_from: %d (%v), want 1", compat, err)
	}
	var res [1]limiter.Result
	if err := s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: "k", Limit: limiter.Limit{Requests: 5, Period: time.Hour}, Hits: 1}}, res[:]); err != nil {
		t.Fatal(err)
	}
	if !res[0].Allowed || res[0].Remaining != 3 {
		t.Errorf("after the upgrade: %+v, want allowed with 3 remaining (the count of version 1 kept)", res[0])
	}
}

// TestOpenWhileDatabaseDown checks that Open succeeds while the database is
// unreachable, that Ping and Take fail then, and that once it is up the
// schema is checked: refused until migrated.
func TestOpenWhileDatabaseDown(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	srv.Stop()
	ctx := context.Background()
	s, err := Open(ctx, Settings{DSN: secret.String(srv.DSN("postgres")), Schema: "late", ConnectTimeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatalf("Open with the database down: %v", err)
	}
	defer s.Close()
	if err := s.Ping(ctx); err == nil || errors.Is(err, ErrSchema) {
		t.Errorf("Ping with the database down: got %v, want a connection error", err)
	}
	srv.Restart(t)
	if err := s.Ping(ctx); !errors.Is(err, ErrSchema) {
		t.Errorf("Ping on a database without the schema: got %v, want ErrSchema", err)
	}
	res := make([]limiter.Result, 1)
	reqs := []limiter.Request{{Key: "k", Limit: limiter.Limit{Requests: 1, Period: time.Hour}, Hits: 1}}
	if err := s.Take(ctx, limiter.CountAll, reqs, res); !errors.Is(err, ErrSchema) {
		t.Errorf("Take on a database without the schema: got %v, want ErrSchema", err)
	}
	if _, _, err := s.Migrate(ctx); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping after Migrate: %v", err)
	}
	if err := s.Take(ctx, limiter.CountAll, reqs, res); err != nil || !res[0].Allowed {
		t.Errorf("Take after Migrate: got %+v, %v; want allowed", res[0], err)
	}
}

// TestBinaryKeys checks that keys are kept as raw bytes: NUL bytes and
// invalid UTF-8 are distinct keys, so no key encoding is needed (nor fuzzed).
func TestBinaryKeys(t *testing.T) {
	s := openStore(t, pgtest.Shared(t), Settings{})
	l := limiter.Limit{Requests: 10, Period: 1000*time.Hour + 7*time.Second}
	keys := []string{"a\x00b", "a\x00c", "a", "\xff\xfe", "\xff", "", "a\x00"}
	for i, k := range keys {
		takeRetry(t, s, []limiter.Request{{Key: k, Limit: l, Hits: int64(i + 1)}})
	}
	for i, k := range keys {
		r := takeRetry(t, s, []limiter.Request{{Key: k, Limit: l}})
		if want := l.Requests - int64(i+1); r[0].Remaining != want {
			t.Errorf("key %q: remaining %d, want %d", k, r[0].Remaining, want)
		}
	}
}
