package pgstore

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/pkg/secret"
)

// TestMain stops the server that most tests share (pgtest.Shared); tests
// that stop or restart PostgreSQL start their own (pgtest.Start).
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

var schemaSeq atomic.Int64

// newSchema returns a schema name unique to this test binary.
func newSchema() string {
	return fmt.Sprintf("t%d_%d", time.Now().UnixNano()%1e6, schemaSeq.Add(1))
}

// openStore opens a Store on srv and closes it when t ends. Unset DSN,
// Schema (a fresh one, migrated) and StatementTimeout (10s: the test
// machine is shared, and tests check decisions, not latency) are filled in.
func openStore(t testing.TB, srv *pgtest.Server, st Settings) *Store {
	t.Helper()
	if st.DSN == "" && st.DSNFile == "" && st.DSNEnv == "" {
		st.DSN = secret.String(srv.DSN("postgres"))
	}
	if st.Schema == "" {
		st.Schema = newSchema()
		st.AutoMigrate = true
	}
	if st.StatementTimeout == 0 {
		st.StatementTimeout = 10 * time.Second
	}
	s, err := Open(context.Background(), st)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rowCount returns the number of rows in s's counters table.
func rowCount(t testing.TB, s *Store) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+quoteIdent(s.schema)+".counters").Scan(&n); err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return n
}
