package pgstore

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/secret"
)

// Defaults of Settings. A rate-limit check sits in front of every request
// Envoy forwards (Envoy's RPC timeout defaults to 20 ms), so a slow database
// must fail fast and let the failover chain answer:
//   - DefaultConnectTimeout: a TCP (and TLS) handshake plus authentication
//     to a database in the same zone takes a few ms; 1 s allows a TLS
//     handshake and SCRAM under load.
//   - DefaultStatementTimeout: one Take is well under a millisecond of
//     database time, but calls on one hot key queue on its row lock. The
//     caller's context deadline (the chain's call timeout) is the real bound;
//     250 ms caps what a call abandoned by its client (whose statement
//     goes on in the server) or a call without a deadline may hold.
//   - DefaultCleanupInterval, DefaultCleanupBatch: every replica deletes
//     expired rows once a minute, 1000 rows per statement, so no delete
//     holds locks for long.
const (
	DefaultSchema           = "extauthz"
	DefaultConnectTimeout   = time.Second
	DefaultStatementTimeout = 250 * time.Millisecond
	DefaultCleanupInterval  = time.Minute
	DefaultCleanupBatch     = 1000
)

// Settings configures a Store. Zero values are the documented defaults.
// Exactly one of DSN, DSNFile and DSNEnv is set.
type Settings struct {
	// DSN is a libpq connection string or URL, e.g.
	// "postgres://extauthz:secret@db:5432/app?sslmode=verify-full". TLS is
	// configured with its sslmode, sslrootcert, sslcert and sslkey
	// parameters; pool_max_conns and other pgxpool parameters are accepted
	// but the fields below override them.
	DSN secret.String `yaml:"dsn"`
	// DSNFile names a file holding the DSN (trailing whitespace trimmed),
	// checked by Validate and read at Open.
	DSNFile string `yaml:"dsn_file"`
	// DSNEnv names an environment variable holding the DSN, checked by
	// Validate and read at Open.
	DSNEnv string `yaml:"dsn_env"`

	// Schema holds the table and functions (default DefaultSchema,
	// "extauthz"): lower-case letters, digits and underscores, not starting
	// with a digit, at most 63 bytes, not starting with "pg_".
	Schema string `yaml:"schema"`
	// MaxConns is the pool size (default: pgxpool's, the larger of 4 and
	// the number of CPUs). MinConns connections are kept open (default 0).
	MaxConns int32 `yaml:"max_conns"`
	MinConns int32 `yaml:"min_conns"`
	// ConnectTimeout bounds establishing a connection (default
	// DefaultConnectTimeout).
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// StatementTimeout is the server-side statement_timeout of the pool's
	// connections (default DefaultStatementTimeout). Each call's context
	// deadline is honoured as well. Migrations and cleanup set their own.
	StatementTimeout time.Duration `yaml:"statement_timeout"`

	// AutoMigrate makes Open create or upgrade the schema (Migrate) instead
	// of refusing a schema older than this build's.
	AutoMigrate bool `yaml:"auto_migrate"`
	// CleanupInterval is how often the background cleanup deletes expired
	// rows (default DefaultCleanupInterval); negative disables it (run
	// Cleanup yourself, e.g. `extauthz cleanup`).
	CleanupInterval time.Duration `yaml:"cleanup_interval"`
	// CleanupBatch is the most rows one cleanup statement deletes (default
	// DefaultCleanupBatch).
	CleanupBatch int `yaml:"cleanup_batch"`

	// Now, when set, is the time every decision uses, sent to the database
	// instead of its clock_timestamp(). Only tests set it: in production the
	// server clock makes every replica agree however skewed their clocks
	// are. Expiry is then judged by Now too (Cleanup keeps the server clock).
	Now func() time.Time `yaml:"-"`
	// OnCall, when set, is called after every Take round trip with its
	// duration and error (nil on success). It runs on the request path.
	OnCall func(d time.Duration, err error) `yaml:"-"`
	// OnCleanup, when set, is called after every Cleanup batch with the rows
	// it deleted and its error.
	OnCleanup func(rows int64, err error) `yaml:"-"`
	// Tracer, when set, traces every query of the pool (pgx.QueryTracer),
	// e.g. for OpenTelemetry.
	Tracer pgx.QueryTracer `yaml:"-"`
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate fills in the defaults of s's zero values, checks that the DSN
// it names can be read (dsn_file, dsn_env), and returns every problem as a
// *field.Error (joined) whose path is the YAML key ("dsn_file", "schema").
func (s *Settings) Validate() error {
	*s = s.withDefaults()
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, field.Errorf(path, format, args...))
	}
	set := 0
	for _, v := range []string{string(s.DSN), s.DSNFile, s.DSNEnv} {
		if v != "" {
			set++
		}
	}
	switch {
	case set == 0:
		add("dsn", "missing: set one of dsn, dsn_file or dsn_env")
	case set > 1:
		add("dsn", "dsn, dsn_file and dsn_env are exclusive: set one")
	default:
		if _, err := s.ResolveDSN(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.Schema != "" && (!schemaName.MatchString(s.Schema) || strings.HasPrefix(s.Schema, "pg_")) {
		add("schema", "%q is not a valid schema name: want lower-case letters, digits and underscores, not starting with a digit or pg_, at most 63 bytes", s.Schema)
	}
	if s.MaxConns < 0 {
		add("max_conns", "%d is negative: want 0 (default) or a pool size", s.MaxConns)
	}
	if s.MinConns < 0 {
		add("min_conns", "%d is negative", s.MinConns)
	} else if s.MaxConns > 0 && s.MinConns > s.MaxConns {
		add("min_conns", "%d is above max_conns %d", s.MinConns, s.MaxConns)
	}
	if s.ConnectTimeout < 0 {
		add("connect_timeout", "%v is negative: want 0 (default %v) or a duration", s.ConnectTimeout, DefaultConnectTimeout)
	}
	if s.StatementTimeout < 0 {
		add("statement_timeout", "%v is negative: want 0 (default %v) or a duration", s.StatementTimeout, DefaultStatementTimeout)
	} else if s.StatementTimeout > 0 && s.StatementTimeout < time.Millisecond {
		add("statement_timeout", "%v is below PostgreSQL's resolution of 1ms", s.StatementTimeout)
	}
	if s.CleanupBatch < 0 {
		add("cleanup_batch", "%d is negative: want 0 (default %d) or a row count", s.CleanupBatch, DefaultCleanupBatch)
	}
	return errors.Join(errs...)
}

// withDefaults returns s with its zero values replaced by the defaults.
func (s Settings) withDefaults() Settings {
	if s.Schema == "" {
		s.Schema = DefaultSchema
	}
	if s.ConnectTimeout == 0 {
		s.ConnectTimeout = DefaultConnectTimeout
	}
	if s.StatementTimeout == 0 {
		s.StatementTimeout = DefaultStatementTimeout
	}
	if s.CleanupInterval == 0 {
		s.CleanupInterval = DefaultCleanupInterval
	}
	if s.CleanupBatch == 0 {
		s.CleanupBatch = DefaultCleanupBatch
	}
	return s
}

// ResolveDSN returns the DSN that s names: DSN itself, the trimmed contents
// of DSNFile, or the value of the environment variable DSNEnv. Errors are
// *field.Error values.
func (s *Settings) ResolveDSN() (string, error) {
	switch {
	case s.DSN != "":
		return string(s.DSN), nil
	case s.DSNFile != "":
		b, err := os.ReadFile(s.DSNFile)
		if err != nil {
			return "", field.Errorf("dsn_file", "%w", err) // names the file, not its contents
		}
		dsn := strings.TrimSpace(string(b))
		if dsn == "" {
			return "", field.Errorf("dsn_file", "%s is empty", s.DSNFile)
		}
		return dsn, nil
	case s.DSNEnv != "":
		dsn, ok := os.LookupEnv(s.DSNEnv)
		if !ok || strings.TrimSpace(dsn) == "" {
			return "", field.Errorf("dsn_env", "environment variable %s is unset or empty", s.DSNEnv)
		}
		return strings.TrimSpace(dsn), nil
	}
	return "", field.Errorf("dsn", "missing: set one of dsn, dsn_file or dsn_env")
}

// quoteIdent quotes a schema name that Validate accepted.
func quoteIdent(s string) string { return `"` + s + `"` }

// errorf is fmt.Errorf with the package prefix.
func errorf(format string, args ...any) error {
	return fmt.Errorf("pgstore: "+format, args...)
}
