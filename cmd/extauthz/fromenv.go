package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/envcompat"
)

// envDocName names the server file generated from envoyproxy/ratelimit's
// environment variables in messages ("<environment>:12:3: ..."); relative
// paths in it are relative to the working directory, as in the reference.
const envDocName = "<environment>"

// envSource is the server file generated from the environment: serve,
// validate, explain, health, migrate and cleanup run from it when no --config (or
// EXTAUTHZ_CONFIG) is given and a reference variable is set, so that all of
// them see exactly what `extauthz config from-env` prints.
type envSource struct {
	res  *envcompat.Result
	vars []string // the reference variables set
}

// detectEnv returns the environment's server file when no config path is
// given and an envoyproxy/ratelimit variable is set; nil when none is set.
// A variable that cannot be honoured is an error listing all of them.
func detectEnv(path string, getenv func(string) string, stderr io.Writer) (*envSource, error) {
	if path != "" {
		return nil, nil
	}
	vars := envcompat.Detect(getenv)
	if len(vars) == 0 {
		return nil, nil
	}
	res, err := envcompat.Generate(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "extauthz: no --config given and envoyproxy/ratelimit variables are set (%s), so the server file comes from the environment.\n", strings.Join(vars, ", "))
		return nil, configError(stderr, err)
	}
	return &envSource{res: res, vars: vars}, nil
}

// load loads the generated server file with the ordinary loader.
func (s *envSource) load() (*config.Config, error) {
	cfg, err := config.Load(bytes.NewReader(s.res.YAML), envDocName)
	if err != nil {
		return nil, fmt.Errorf("%w\n(%s is the server file generated from envoyproxy/ratelimit variables: run extauthz config from-env to see the lines named)", err, envDocName)
	}
	return cfg, nil
}

// configCmd runs "extauthz config from-env": print the server file the
// environment's envoyproxy/ratelimit variables amount to.
func configCmd(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "from-env" {
		fmt.Fprintln(stderr, "Usage: extauthz config from-env\n\nPrints the extauthz server file equivalent to the envoyproxy/ratelimit environment variables that are set.")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
			return &exitError{code: 0}
		}
		return errUsage
	}
	fs := newFlagSet("config from-env", "config from-env", stderr)
	if err := parseFlags(fs, args[1:]); err != nil {
		return err
	}
	res, err := envcompat.Generate(getenv)
	if err != nil {
		var e *envcompat.Error
		if errors.As(err, &e) {
			return configError(stderr, err)
		}
		return err
	}
	if len(envcompat.Detect(getenv)) == 0 {
		fmt.Fprintln(stderr, "extauthz config from-env: no envoyproxy/ratelimit variable is set; this is the file their defaults amount to.")
	}
	if res.Secret {
		fmt.Fprintln(stderr, "extauthz config from-env: the output holds a password from the environment (REDIS_AUTH as user:password, or a sentinel password); move it to password_file or password_env before committing the file.")
	}
	_, err = stdout.Write(res.YAML)
	return err
}
