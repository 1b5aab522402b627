package pgstore

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/extauthz/extauthz/internal/pgtest"
)

// TestTakePlansUseThePrimaryKey checks, with auto_explain, that every
// statement inside take and take_one reaches counters through its primary key on a big
// table, also with generic (cached) plans: no sequential or expiry-index
// scan per call.
func TestTakePlansUseThePrimaryKey(t *testing.T) {
	srv := pgtest.Shared(t)
	s := openStore(t, srv, Settings{CleanupInterval: -1})
	ctx := context.Background()
	q := quoteIdent(s.schema)
	if _, err := s.pool.Exec(ctx, `INSERT INTO `+q+`.counters SELECT convert_to('k' || i, 'UTF8'), i, 1, 0, 9000000000000000000 FROM generate_series(1, 100000) i`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE `+q+`.counters`); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var plans []string
	cfg, err := pgx.ParseConfig(srv.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		plans = append(plans, n.Message)
		mu.Unlock()
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, st := range []string{
		"LOAD 'auto_explain'",
		"SET auto_explain.log_min_duration = 0",
		"SET auto_explain.log_nested_statements = on",
		"SET auto_explain.log_level = notice",
		"SET plan_cache_mode = force_generic_plan",
	} {
		if _, err := c.Exec(ctx, st); err != nil {
			// auto_explain is a contrib module that the Debian server package ships.
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s: %v", st, err)
			}
			t.Skipf("auto_explain not available: %s: %v", st, err)
		}
	}
	for i := range 3 {
		keys := [][]byte{[]byte("k1"), []byte("k2"), []byte("new" + string(rune('a'+i)))}
		if _, err := c.Exec(ctx, `SELECT * FROM `+q+`.take($1, '{0,1,2}', '{5,5,5}', '{3600000000000,3600000000000,3600000000000}', '{0,0,0}', '{1,1,1}', '{f,f,f}', 0, NULL)`, keys); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	many := strings.Join(plans, "\n")
	plans = nil
	mu.Unlock()
	for i := range 3 {
		if _, err := c.Exec(ctx, `SELECT * FROM `+q+`.take_one($1, $2, 5, 3600000000000, 0, 1, false, 0, NULL)`, []byte("one"+string(rune('a'+i))), i); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	one := strings.Join(plans, "\n")
	mu.Unlock()
	for name, all := range map[string]string{"take": many, "take_one": one} {
		if testing.Verbose() { // BENCHMARKS.md quotes these plans
			t.Logf("%s plans:\n%s", name, all)
		}
		for _, want := range []string{"Conflict Arbiter Indexes: counters_pkey", "Index Scan using counters_pkey on counters c", "Update on counters c"} {
			if !strings.Contains(all, want) {
				t.Errorf("%s plans do not contain %q:\n%s", name, want, all)
			}
		}
		for _, bad := range []string{"Seq Scan on counters", "Bitmap Heap Scan on counters", "counters_expires_at"} {
			if strings.Contains(all, bad) {
				t.Errorf("%s plans contain %q:\n%s", name, bad, all)
			}
		}
	}
}
