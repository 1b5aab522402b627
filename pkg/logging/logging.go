// Package logging builds extauthz's log/slog logger from the server file's
// log section and throttles repetitive warnings such as backend failures.
//
// It lives at the edge with cmd and the server: core packages (limiter,
// descriptor, config, backends) do not log; they return errors or call
// callbacks that the edge logs.
package logging

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/pkg/field"
)

// Settings is the server file's log section. Zero values are the
// documented defaults.
type Settings struct {
	// Level is the least severe level logged: debug (adds one line per
	// refused request), info (default), warn or error.
	Level string `yaml:"level"`
	// Format is text (default, logfmt-like) or json.
	Format string `yaml:"format"`
}

// Names and defaults of the Settings values.
var (
	Levels  = []string{"debug", "info", "warn", "error"}
	Formats = []string{"text", "json"}
)

const (
	DefaultLevel  = "info"
	DefaultFormat = "text"
)

// WithDefaults returns s with the default level and format filled in.
func (s Settings) WithDefaults() Settings {
	if s.Level == "" {
		s.Level = DefaultLevel
	}
	if s.Format == "" {
		s.Format = DefaultFormat
	}
	return s
}

// Validate checks that the set values of s are names of Levels and
// Formats; errors are *field.Error values at "level" and "format".
func (s *Settings) Validate() error {
	var errs []error
	for _, f := range []struct {
		path, v string
		names   []string
	}{{"level", s.Level, Levels}, {"format", s.Format, Formats}} {
		if f.v != "" && !slices.Contains(f.names, f.v) {
			errs = append(errs, field.Errorf(f.path, "unknown value %q: choices are %s", f.v, strings.Join(f.names, ", ")))
		}
	}
	return errors.Join(errs...)
}

// New returns a logger writing cfg.Format ("text", the default, or "json")
// to w at cfg.Level ("debug", "info", the default, "warn" or "error"), and
// the LevelVar that holds the level: set it to change the level live, e.g.
// on a config reload (the format needs a restart).
//
// Secrets never reach the output through config.Secret values: both
// formats print them as "<redacted>".
func New(w io.Writer, cfg Settings) (*slog.Logger, *slog.LevelVar, error) {
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
