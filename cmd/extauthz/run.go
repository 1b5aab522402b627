package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/extauthz/extauthz/pkg/config"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
// When empty, the module version from the build info is used.
var version string

// Environment variables that stand in for flags not given on the command
// line.
const (
	envConfig   = "EXTAUTHZ_CONFIG"
	envGRPCAddr = "EXTAUTHZ_GRPC_ADDR"
	envHTTPAddr = "EXTAUTHZ_HTTP_ADDR"
)

const usage = `extauthz is a rate-limiting sidecar for Envoy.

Usage:
  extauthz serve --config FILE [--grpc-addr HOST:PORT] [--http-addr HOST:PORT]
  extauthz validate --config FILE
  extauthz explain --config FILE --domain D --descriptor k=v[,k=v...] [--descriptor ...]
  extauthz explain --config FILE [--ip IP] [--header name:value ...] [--method M] [--host H] --path P
  extauthz health --config FILE [--timeout D]
  extauthz top [--addr HOST:PORT|URL] [--token-file F] [--interval 2s] [--window 5m] [--once]
  extauthz check [--addr HOST:PORT] --domain D --descriptor k=v[,k=v...] [--descriptor ...] [--hits N] [--json]
  extauthz migrate --config FILE [--timeout D]
  extauthz cleanup --config FILE [--timeout D]
  extauthz config from-env
  extauthz version

Environment: EXTAUTHZ_CONFIG, EXTAUTHZ_GRPC_ADDR and EXTAUTHZ_HTTP_ADDR stand in
for --config, --grpc-addr and --http-addr; flags win over the environment, which
wins over the config file. Without --config (or EXTAUTHZ_CONFIG), when
envoyproxy/ratelimit's variables are set (REDIS_URL, RUNTIME_ROOT, ...), serve,
validate, explain, health, migrate and cleanup run from the server file they
amount to, which "extauthz config from-env" prints (see MIGRATING.md).

Run "extauthz COMMAND -h" for the flags of a command.
`

// exitError carries an exit code; its message, when not empty, has not
// been printed yet.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// errUsage is a command-line mistake, already reported: exit 2.
var errUsage = &exitError{code: 2}

// exitCode prints err (unless already printed) and returns the process exit
// code for it: 0 for nil, the code of an *exitError, 1 otherwise.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" {
			fmt.Fprintln(stderr, "extauthz:", ee.msg)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "extauthz:", err)
	return 1
}

// run executes the command in args (without the program name). getenv
// reads the environment; stdout and stderr receive the output. It returns
// nil for success; see exitCode for the rest.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "serve":
		return serve(ctx, args, getenv, stderr)
	case "validate":
		return validate(args, getenv, stdout, stderr)
	case "explain":
		return explain(args, getenv, stdout, stderr)
	case "health":
		return healthCmd(ctx, args, getenv, stdout, stderr)
	case "top":
		return topCmd(ctx, args, stdout, stderr)
	case "check":
		return checkCmd(ctx, args, stdout, stderr)
	case "migrate":
		return migrateCmd(ctx, args, getenv, stdout, stderr)
	case "cleanup":
		return cleanupCmd(ctx, args, getenv, stdout, stderr)
	case "config":
		return configCmd(args, getenv, stdout, stderr)
	case "version":
		if len(args) > 0 {
			fmt.Fprintln(stderr, "extauthz version takes no arguments")
			return errUsage
		}
		fmt.Fprintln(stdout, "extauthz", versionString(), runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH)
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "extauthz: unknown command %q\n\n%s", cmd, usage)
	return errUsage
}

// versionString is version, else the main module's version and VCS
// revision from the build info.
func versionString() string {
	if version != "" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if rev != "" && v == "(devel)" {
		v += " " + rev[:min(12, len(rev))] + dirty
	}
	return v
}

// newFlagSet returns a flag set for command name that reports errors to
// stderr (with the command's usage) instead of exiting.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: extauthz %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args into fs; any leftover argument is a usage error.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return &exitError{code: 0}
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "extauthz %s: unexpected arguments: %s\n", fs.Name(), strings.Join(fs.Args(), " "))
		fs.Usage()
		return errUsage
	}
	return nil
}

// fromEnv sets each flag in vars that the command line did not set from
// its environment variable, when that is not empty.
func fromEnv(fs *flag.FlagSet, getenv func(string) string, vars map[string]string) error {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, env := range vars {
		if set[name] {
			continue
		}
		if v := getenv(env); v != "" {
			if err := fs.Set(name, v); err != nil {
				return &exitError{code: 2, msg: fmt.Sprintf("%s=%q: %v", env, v, err)}
			}
		}
	}
	return nil
}

// loadConfig parses args into fs, whose --config flag sets *path, takes
// unset flags from the environment, and loads the config file: the
// preamble of every command that reads a config and does not serve it.
func loadConfig(fs *flag.FlagSet, path *string, args []string, getenv func(string) string, stderr io.Writer) (*config.Config, error) {
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	if err := fromEnv(fs, getenv, map[string]string{"config": envConfig}); err != nil {
		return nil, err
	}
	src, err := detectEnv(*path, getenv, fs.Output())
	if err != nil {
		return nil, err
	}
	if src != nil {
		*path = envDocName
		cfg, err := src.load()
		if err != nil {
			return nil, configError(stderr, err)
		}
		return cfg, nil
	}
	if err := requireConfig(fs, *path); err != nil {
		return nil, err
	}
	cfg, err := config.LoadFile(*path)
	if err != nil {
		return nil, configError(stderr, err)
	}
	return cfg, nil
}

// requireConfig reports a missing --config.
func requireConfig(fs *flag.FlagSet, path string) error {
	if path == "" {
		fmt.Fprintf(fs.Output(), "extauthz %s: --config (or %s) is required (or envoyproxy/ratelimit's environment variables, see MIGRATING.md)\n", fs.Name(), envConfig)
		fs.Usage()
		return errUsage
	}
	return nil
}
