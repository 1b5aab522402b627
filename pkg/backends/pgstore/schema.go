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
	// CompatibleFrom is the oldest build's SchemaVersion that can still
	// serve a schema at Version: the file's "-- compatible_from: N" line
	// for a migration that only adds (old builds use none of it), else
	// Version itself. It never falls below the previous migration's (a
	// build that could not serve that schema cannot serve this one), so
	// the newest version's alone decides.
	CompatibleFrom int
}

// compatibleLine declares a migration additive (migration.CompatibleFrom).
const compatibleLine = "-- compatible_from: "

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
		m := migration{Version: v, Name: name, SQL: string(b), CompatibleFrom: v}
		for _, line := range strings.Split(m.SQL, "\n") {
			if c, ok := strings.CutPrefix(line, compatibleLine); ok {
				low := 1
				if len(ms) > 0 {
					low = ms[len(ms)-1].CompatibleFrom
				}
				if m.CompatibleFrom, err = strconv.Atoi(strings.TrimSpace(c)); err != nil || m.CompatibleFrom < low || m.CompatibleFrom > v {
					return nil, fmt.Errorf("pgstore: migration file %s: %q wants a version from %d (the previous migration's) to %d", base, line, low, v)
				}
			}
		}
		ms = append(ms, m)
	}
	return ms, nil
}

// ErrSchema is wrapped by Open, Take and Ping when the database's schema is
// missing, older or newer than SchemaVersion, and by Migrate when the schema
// is newer than this build.
var ErrSchema = errors.New("schema version mismatch")

// schemaVersion is what a schema's schema_migrations table records: its
// version, and the oldest build's SchemaVersion that can serve it.
type schemaVersion struct {
	Version, CompatibleFrom int
}

// servable reports whether this build can serve a schema at v: its own
// version, or a newer one whose migrations since only added.
func (v schemaVersion) servable() bool {
	return v.Version == SchemaVersion || (v.Version > SchemaVersion && v.CompatibleFrom <= SchemaVersion)
}

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
	return v.Version, nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// readVersion reads the newest version row. A table made before
// compatible_from existed has no such column: to_jsonb reads it either way
// (absent: the version itself, as for a migration that did not declare it).
func readVersion(ctx context.Context, q querier, schema string) (schemaVersion, error) {
	var v schemaVersion
	err := q.QueryRow(ctx, "SELECT version, coalesce((to_jsonb(m)->>'compatible_from')::int, version) FROM "+
		quoteIdent(schema)+".schema_migrations m ORDER BY version DESC LIMIT 1").Scan(&v.Version, &v.CompatibleFrom)
	var pe *pgconn.PgError
	if errors.Is(err, pgx.ErrNoRows) || errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000") { // undefined_table, invalid_schema_name
		return schemaVersion{}, nil
	}
	return v, err
}

// CheckSchema returns nil when the database's schema is at SchemaVersion
// (or newer, with only additive migrations since: migration.CompatibleFrom),
// and otherwise an error wrapping ErrSchema that says to run migrate (or
// the error that kept it from reading the version).
func (s *Store) CheckSchema(ctx context.Context) error {
	v, err := readVersion(ctx, s.pool, s.schema)
	if err != nil {
		return errorf("schema version: %w", err)
	}
	if !v.servable() {
		return errorf("%w", schemaError(s.schema, v.Version))
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
// ErrSchema) a schema newer than this build unless the migrations since
// only added (migration.CompatibleFrom): then it changes nothing and
// reports the schema's version as both.
func (s *Store) Migrate(ctx context.Context) (from, to int, err error) {
	from, err = migrate(ctx, s.pool, s.schema)
	if err != nil {
		return from, from, errorf("migrate schema %q: %w", s.schema, err)
	}
	s.ready.Store(true)
	return from, max(from, SchemaVersion), nil
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
		"ALTER TABLE " + q + ".schema_migrations ADD COLUMN IF NOT EXISTS compatible_from int",
	}
	for _, st := range stmts {
		if _, err := tx.Exec(ctx, st); err != nil {
			return 0, err
		}
	}
	v, err := readVersion(ctx, tx, schema)
	if err != nil {
		return 0, err
	}
	from = v.Version
	if from > SchemaVersion {
		if v.servable() {
			return from, nil // newer, but only added to since: nothing to do
		}
		return from, schemaError(schema, from)
	}
	for _, m := range migrations[from:] {
		if _, err := tx.Exec(ctx, strings.ReplaceAll(m.SQL, "{{schema}}", q)); err != nil {
			return from, fmt.Errorf("version %d (%s): %w", m.Version, m.Name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+q+".schema_migrations (version, name, compatible_from) VALUES ($1, $2, $3)", m.Version, m.Name, m.CompatibleFrom); err != nil {
			return from, fmt.Errorf("record version %d: %w", m.Version, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return from, err
	}
	return from, nil
}
