// Package logging builds extauthz's log/slog logger from the server file's
// log section and throttles repetitive warnings such as backend failures.
//
// It lives at the edge with cmd and the server: core packages (limiter,
// descriptor, config, backends) do not log; they return errors or call
// callbacks that the edge logs.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/extauthz/extauthz/pkg/config"
)

// New returns a logger writing cfg.Format ("text", the default, or "json")
// to w at cfg.Level ("debug", "info", the default, "warn" or "error"), and
// the LevelVar that holds the level: set it to change the level live, e.g.
// on a config reload (the format needs a restart).
//
// Secrets never reach the output through config.Secret values: both
// formats print them as "<redacted>".
func New(w io.Writer, cfg config.Log) (*slog.Logger, *slog.LevelVar, error) {
	level, err := ParseLevel(cfg.Level)
	if err != nil {
		return nil, nil, err
	}
	lv := new(slog.LevelVar)
	lv.Set(level)
	opts := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	switch strings.ToLower(cfg.Format) {
	case "", "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		h = slog.NewJSONHandler(w, opts)
	default:
		return nil, nil, fmt.Errorf("logging: unknown format %q: choices are text, json", cfg.Format)
	}
	return slog.New(h), lv, nil
}

// ParseLevel parses a log level of the server file ("" is info).
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("logging: unknown level %q: choices are debug, info, warn, error", s)
}
