package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/pgstore"
	"github.com/extauthz/extauthz/pkg/config"
)

// pgBackend is one postgres entry of a server file.
type pgBackend struct {
	path, name string
	settings   pgstore.Settings
}

// postgresBackends lists the postgres entries of every chain of cfg.
func postgresBackends(cfg *config.Config) []pgBackend {
	var out []pgBackend
	for _, ch := range cfg.ChainList() {
		for i, b := range ch.Backends {
			if b.Type == "postgres" {
				out = append(out, pgBackend{path: config.BackendPath(ch.Name, i), name: b.Name, settings: b.Postgres})
			}
		}
	}
	return out
}

// maintenance runs the command name (migrate or cleanup) with do on every
// postgres backend of the server file: flags, config, Connect (no schema
// check, no background cleanup), a bounded context. It goes on after a
// backend fails and returns exit code 1 if any did.
func maintenance(ctx context.Context, name string, args []string, getenv func(string) string, stdout, stderr io.Writer,
	do func(ctx context.Context, s *pgstore.Store, b pgBackend, out io.Writer) error) error {
	var (
		path    string
		timeout time.Duration
	)
	fs := newFlagSet(name, name+" --config FILE [--timeout D]", stderr)
	fs.StringVar(&path, "config", "", "server config file (env "+envConfig+")")
	fs.DurationVar(&timeout, "timeout", 5*time.Minute, "how long the command may take")
	cfg, err := loadConfig(fs, &path, args, getenv, stderr)
	if err != nil {
		return err
	}
	pgs := postgresBackends(cfg)
	if len(pgs) == 0 {
		fmt.Fprintf(stdout, "%s: no postgres backend; nothing to do\n", path)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var failed []error
	for _, b := range pgs {
		s, err := pgstore.Connect(ctx, b.settings)
		if err == nil {
			err = do(ctx, s, b, stdout)
			s.Close()
		}
		if err != nil {
			fmt.Fprintf(stderr, "extauthz %s: %s (%s): %v\n", name, b.path, b.name, err)
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%s failed on %d of %d postgres backends", name, len(failed), len(pgs))}
	}
	return nil
}

// migrateCmd is `extauthz migrate --config FILE`: it creates or upgrades
// the schema of every postgres backend (pgstore.Migrate: versioned,
// idempotent, safe from several replicas at once) and prints each
// backend's version before and after.
func migrateCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return maintenance(ctx, "migrate", args, getenv, stdout, stderr, func(ctx context.Context, s *pgstore.Store, b pgBackend, out io.Writer) error {
		from, to, err := s.Migrate(ctx)
		if err != nil {
			return err
		}
		verb := "migrated"
		if from == to {
			verb = "up to date"
		}
		fmt.Fprintf(out, "%s (%s, %s): schema %s %s: version %d -> %d\n", b.path, b.name, s.Addr(), b.settings.Schema, verb, from, to)
		return nil
	})
}

// cleanupCmd is `extauthz cleanup --config FILE`: it checks the schema of
// every postgres backend and deletes its expired rows (pgstore.Cleanup, in
// batches of cleanup_batch), printing the rows removed.
func cleanupCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return maintenance(ctx, "cleanup", args, getenv, stdout, stderr, func(ctx context.Context, s *pgstore.Store, b pgBackend, out io.Writer) error {
		if err := s.CheckSchema(ctx); err != nil {
			return err
		}
		rows, err := s.Cleanup(ctx, 0)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		fmt.Fprintf(out, "%s (%s, %s): removed %d expired rows\n", b.path, b.name, s.Addr(), rows)
		return err
	})
}
