package pgstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/extauthz/extauthz/pkg/field"
)

func TestValidate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte("postgres://h/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGSTORE_TEST_VALIDATE_DSN", "postgres://h/db")
	tests := []struct {
		name  string
		s     Settings
		paths []string
	}{
		{"dsn", Settings{DSN: "postgres://h/db"}, nil},
		{"dsn_file", Settings{DSNFile: file}, nil},
		{"missing dsn_file", Settings{DSNFile: file + ".missing"}, []string{"dsn_file"}},
		{"unset dsn_env", Settings{DSNEnv: "PGSTORE_TEST_UNSET"}, []string{"dsn_env"}},
		{"full", Settings{DSNEnv: "PGSTORE_TEST_VALIDATE_DSN", Schema: "rate_limits2", MaxConns: 8, MinConns: 2, StatementTimeout: time.Second, CleanupInterval: -1, CleanupBatch: 10}, nil},
		{"no dsn", Settings{}, []string{"dsn"}},
		{"two dsns", Settings{DSN: "x", DSNEnv: "PG"}, []string{"dsn"}},
		{"bad schema", Settings{DSN: "x", Schema: "Bad-Name"}, []string{"schema"}},
		{"pg_ schema", Settings{DSN: "x", Schema: "pg_temp"}, []string{"schema"}},
		{"long schema", Settings{DSN: "x", Schema: strings.Repeat("a", 64)}, []string{"schema"}},
		{"negatives", Settings{DSN: "x", MaxConns: -1, MinConns: -1, ConnectTimeout: -1, StatementTimeout: -1, CleanupBatch: -1},
			[]string{"max_conns", "min_conns", "connect_timeout", "statement_timeout", "cleanup_batch"}},
		{"min above max", Settings{DSN: "x", MaxConns: 2, MinConns: 3}, []string{"min_conns"}},
		{"sub-ms timeout", Settings{DSN: "x", StatementTimeout: time.Microsecond}, []string{"statement_timeout"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var paths []string
			field.Each(tc.s.Validate(), func(path string, err error) {
				paths = append(paths, path)
			})
			if !slices.Equal(paths, tc.paths) {
				t.Errorf("error paths: got %q, want %q (%v)", paths, tc.paths, tc.s.Validate())
			}
			err := tc.s.Validate()
			var fe *field.Error
			if err != nil && !errors.As(err, &fe) {
				t.Errorf("error %v is not a *field.Error", err)
			}
		})
	}
}

func TestValidateFillsDefaults(t *testing.T) {
	s := Settings{DSN: "postgres://h/db", CleanupInterval: -1}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	want := Settings{DSN: "postgres://h/db", Schema: DefaultSchema, ConnectTimeout: DefaultConnectTimeout,
		StatementTimeout: DefaultStatementTimeout, CleanupInterval: -1, CleanupBatch: DefaultCleanupBatch}
	if s.DSN != want.DSN || s.Schema != want.Schema || s.ConnectTimeout != want.ConnectTimeout || s.StatementTimeout != want.StatementTimeout ||
		s.CleanupInterval != want.CleanupInterval || s.CleanupBatch != want.CleanupBatch {
		t.Errorf("after Validate: %+v, want %+v", s, want)
	}
	if got := fmt.Sprint(s.DSN); got != "<redacted>" {
		t.Errorf("the DSN prints as %q, want it redacted", got)
	}
}

func TestResolveDSN(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "dsn")
	if err := os.WriteFile(file, []byte("postgres://u:p@h/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGSTORE_TEST_DSN", " postgres://e/db ")
	for _, tc := range []struct {
		s       Settings
		want    string
		errPath string
	}{
		{Settings{DSN: "postgres://d/db"}, "postgres://d/db", ""},
		{Settings{DSNFile: file}, "postgres://u:p@h/db", ""},
		{Settings{DSNEnv: "PGSTORE_TEST_DSN"}, "postgres://e/db", ""},
		{Settings{DSNFile: filepath.Join(dir, "missing")}, "", "dsn_file"},
		{Settings{DSNFile: empty}, "", "dsn_file"},
		{Settings{DSNEnv: "PGSTORE_TEST_UNSET"}, "", "dsn_env"},
	} {
		got, err := tc.s.ResolveDSN()
		var fe *field.Error
		switch {
		case tc.errPath == "" && (err != nil || got != tc.want):
			t.Errorf("ResolveDSN(%+v): got %q, %v; want %q", tc.s, got, err, tc.want)
		case tc.errPath != "" && (!errors.As(err, &fe) || fe.Path != tc.errPath):
			t.Errorf("ResolveDSN(%+v): got error %v, want a *field.Error at %s", tc.s, err, tc.errPath)
		}
	}
}

func TestConnectDoesNotLeakTheDSN(t *testing.T) {
	_, err := Connect(context.Background(), Settings{DSN: "postgres://user:s3cret@host:notaport/db"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Connect with a bad DSN: got %v, want an error without the password", err)
	}
	s, err := Connect(context.Background(), Settings{DSN: "postgres://user:s3cret@db.example:5433/app?sslmode=disable"})
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer s.Close()
	if got, want := s.String(), "postgres db.example:5433/app"; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
	if _, err := Open(context.Background(), Settings{Schema: "Bad"}); err == nil {
		t.Error("Open with invalid settings: got nil error")
	}
}

func TestMigrationFiles(t *testing.T) {
	if SchemaVersion < 1 || len(migrations) != SchemaVersion {
		t.Fatalf("SchemaVersion %d with %d migrations", SchemaVersion, len(migrations))
	}
	for i, m := range migrations {
		if m.Version != i+1 || m.Name == "" || !strings.Contains(m.SQL, "{{schema}}") {
			t.Errorf("migration %d: %+v", i, m.Version)
		}
	}
	// Version 2 only adds take_one: builds of version 1 serve it.
	if got := []int{migrations[0].CompatibleFrom, migrations[1].CompatibleFrom}; got[0] != 1 || got[1] != 1 {
		t.Errorf("compatible_from of versions 1 and 2: %v, want [1 1]", got)
	}
	// Version 3 after a breaking version 2 (compatible from 2) cannot be
	// served by builds of version 1.
	for _, line := range []string{"-- compatible_from: 4", "-- compatible_from: 0", "-- compatible_from: 1", "-- compatible_from: two"} {
		fsys := fstest.MapFS{
			"migrations/0001_a.sql": {Data: []byte("CREATE TABLE {{schema}}.a ();")},
			"migrations/0002_b.sql": {Data: []byte("CREATE TABLE {{schema}}.b ();")},
			"migrations/0003_c.sql": {Data: []byte(line + "\nCREATE TABLE {{schema}}.c ();")},
		}
		if _, err := loadMigrations(fsys); err == nil || !strings.Contains(err.Error(), "0003_c.sql") {
			t.Errorf("%q in version 3: got %v, want an error naming the file", line, err)
		}
	}
	ok := fstest.MapFS{
		"migrations/0001_a.sql": {Data: []byte("CREATE TABLE {{schema}}.a ();")},
		"migrations/0002_b.sql": {Data: []byte("-- compatible_from: 1\nCREATE TABLE {{schema}}.b ();")},
		"migrations/0003_c.sql": {Data: []byte("-- compatible_from: 1\nCREATE TABLE {{schema}}.c ();")},
	}
	if ms, err := loadMigrations(ok); err != nil || ms[2].CompatibleFrom != 1 {
		t.Errorf("two additive migrations: %v, %+v", err, ms)
	}
}

// TestSettingsYAML checks that the yaml tags map a backend's keys onto
// Settings (durations as strings) and that unknown keys are rejected.
func TestSettingsYAML(t *testing.T) {
	src := `
dsn_env: PG_DSN
schema: quotas
max_conns: 8
statement_timeout: 500ms
auto_migrate: true
cleanup_interval: -1s
cleanup_batch: 500
`
	var s Settings
	dec := yaml.NewDecoder(strings.NewReader(src))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("decode: %v", err)
	}
	want := Settings{DSNEnv: "PG_DSN", Schema: "quotas", MaxConns: 8, StatementTimeout: 500 * time.Millisecond, AutoMigrate: true, CleanupInterval: -time.Second, CleanupBatch: 500}
	if s.DSNEnv != want.DSNEnv || s.Schema != want.Schema || s.MaxConns != want.MaxConns || s.StatementTimeout != want.StatementTimeout ||
		s.AutoMigrate != want.AutoMigrate || s.CleanupInterval != want.CleanupInterval || s.CleanupBatch != want.CleanupBatch {
		t.Errorf("decoded %+v, want %+v", s, want)
	}
	dec = yaml.NewDecoder(strings.NewReader("dsn: x\nnow: 1\n"))
	dec.KnownFields(true)
	if err := dec.Decode(&Settings{}); err == nil {
		t.Error("decode of an unknown key (now): got nil error")
	}
}

// Store is a chain.Pinger (the interface is restated here so that this
// package does not depend on the chain).
var _ interface{ Ping(context.Context) error } = (*Store)(nil)
