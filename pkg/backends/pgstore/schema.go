package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one schema version: the SQL that brings the schema from
// Version-1 to Version.
type migration struct {
	Version int
	Name    string
	SQL     string // with {{schema}} placeholders
}

// migrations lists the embedded migrations in version order; file names
// are NNNN_name.sql, numbered from 1 without gaps.
var migrations = mustLoadMigrations()

// SchemaVersion is the schema version this build uses: Open refuses any
// other (older, unless Settings.AutoMigrate; or newer).
var SchemaVersion = len(migrations)

func mustLoadMigrations() []migration {
	ms, err := loadMigrations(migrationFiles)
	if err != nil {
		panic(err) // the embedded files are part of the build; TestMigrationFiles covers them
	}
	return ms
}

func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var ms []migration
	for i, n := range names {
		base := path.Base(n)
		num, name, ok := strings.Cut(strings.TrimSuffix(base, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v != i+1 {
			return nil, fmt.Errorf("pgstore: migration file %s: want NNNN_name.sql numbered %d", base, i+1)
		}
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{Version: v, Name: name, SQL: string(b)})
	}
	return ms, nil
}

// ErrSchema is wrapped by Open, Take and Ping when the database's schema is
// missing, older or newer than SchemaVersion, and by Migrate when the schema
// is newer than this build.
var ErrSchema = errors.New("schema version mismatch")

// schemaError says what is wrong with version have and what to do.
func schemaError(schema string, have int) error {
	switch {
	case have == 0:
		return fmt.Errorf("%w: schema %q records no extauthz schema version (want version %d): run `extauthz migrate --config FILE` or set auto_migrate: true", ErrSchema, schema, SchemaVersion)
	case have < SchemaVersion:
		return fmt.Errorf("%w: schema %q is at version %d, this extauthz needs %d: run `extauthz migrate --config FILE` or set auto_migrate: true", ErrSchema, schema, have, SchemaVersion)
	default:
		return fmt.Errorf("%w: schema %q is at version %d, newer than this extauthz knows (%d): upgrade extauthz or use another schema", ErrSchema, schema, have, SchemaVersion)
	}
}

// Version returns the schema version found in the database: 0 when the
// schema or its migrations table does not exist.
func (s *Store) Version(ctx context.Context) (int, error) {
	v, err := readVersion(ctx, s.pool, s.schema)
	if err != nil {
		return 0, errorf("schema version: %w", err)
	}
	return v, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readVersion(ctx context.Context, q querier, schema string) (int, error) {
	var v int
	err := q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+quoteIdent(schema)+".schema_migrations").Scan(&v)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") { // undefined_table, invalid_schema_name
		return 0, nil
	}
	return v, err
}

// CheckSchema returns nil when the database's schema is at SchemaVersion,
// and otherwise an error wrapping ErrSchema that says to run migrate (or
// the error that kept it from reading the version).
func (s *Store) CheckSchema(ctx context.Context) error {
	v, err := s.Version(ctx)
	if err != nil {
		return err
	}
	if v != SchemaVersion {
		return errorf("%w", schemaError(s.schema, v))
	}
	return nil
}

// lockKey is the advisory lock that serialises migrations of schema.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("extauthz migrate " + schema))
	return int64(h.Sum64())
}

// Migrate creates the schema or upgrades it to SchemaVersion and returns
// the versions before and after. It is idempotent and safe to run from
// several processes at once: one transaction under a transaction-scoped
// advisory lock applies every missing migration, or none. It refuses (with
// ErrSchema) a schema newer than this build.
func (s *Store) Migrate(ctx context.Context) (from, to int, err error) {
	from, err = migrate(ctx, s.pool, s.schema)
	if err != nil {
		return from, from, errorf("migrate schema %q: %w", s.schema, err)
	}
	s.ready.Store(true)
	return from, SchemaVersion, nil
}

type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

func migrate(ctx context.Context, db beginner, schema string) (from int, err error) {
	tx, err := db.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer func() { _ = tx.Rollback(ctx) }() // a no-op after Commit
	q := quoteIdent(schema)
	stmts := []string{
		"SET LOCAL statement_timeout = 0",
		"SET LOCAL lock_timeout = 0",
		fmt.Sprintf("SELECT pg_advisory_xact_lock(%d)", lockKey(schema)),
		"CREATE SCHEMA IF NOT EXISTS " + q,
		"CREATE TABLE IF NOT EXISTS " + q + ".schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())",
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st); err != nil {
			return 0, err
		}
	}
	from, err = readVersion(ctx, tx, schema)
	if err != nil {
		return 0, err
	}
	if from > SchemaVersion {
		return from, schemaError(schema, from)
	}
	for _, m := range migrations[from:] {
		if _, err := tx.Exec(ctx, strings.ReplaceAll(m.SQL, "{{schema}}", q)); err != nil {
			return from, fmt.Errorf("version %d (%s): %w", m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+q+".schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
			return from, fmt.Errorf("record version %d: %w", m.Version, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return from, err
	}
	return from, nil
}
