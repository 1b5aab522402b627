package main

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/wire"
)

// healthCmd is `extauthz health --config FILE [--timeout D]`: it opens every
// backend of the server file as serve does, probes each once (PING for
// Redis), prints a table (backend, address, latency, state, error), and
// exits 1 when none is usable.
func healthCmd(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		path    string
		timeout time.Duration
	)
	fs := newFlagSet("health", "health --config FILE [--timeout D]", stderr)
	fs.StringVar(&path, "config", "", "server config file (env "+envConfig+")")
	fs.DurationVar(&timeout, "timeout", 2*time.Second, "how long each backend may take to answer")
	cfg, err := loadConfig(fs, &path, args, getenv, stderr)
	if err != nil {
		return err
	}
	discard := slog.New(slog.DiscardHandler)
	routeRedisLogs(discard) // dial errors show in the table
	bs, err := wire.NewBackends(cfg, discard, nil)
	if err != nil {
		return err
	}
	defer bs.Close()
	usable, err := chain.WriteTable(stdout, chain.Check(ctx, bs.Members, timeout))
	if err != nil {
		return err
	}
	if !usable {
		return &exitError{code: 1, msg: "no backend is usable"}
	}
	return nil
}
