package main

import (
	"fmt"
	"io"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/wire"
)

// validate loads a server file and its rule files without serving: exit 0
// and a summary, or every problem ("file:line:col: path: message", one per
// line) on stderr and exit 1.
func validate(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var path string
	fs := newFlagSet("validate", "validate --config FILE", stderr)
	fs.StringVar(&path, "config", "", "server config file (env "+envConfig+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := fromEnv(fs, getenv, map[string]string{"config": envConfig}); err != nil {
		return err
	}
	if err := requireConfig(fs, path); err != nil {
		return err
	}
	cfg, err := config.LoadFile(path)
	if err != nil {
		return configError(stderr, err)
	}
	if _, err := wire.NewSnapshot(cfg); err != nil {
		return configError(stderr, fmt.Errorf("%s: %w", path, err))
	}
	rules := 0
	domains := cfg.Rules.Domains()
	for _, d := range domains {
		rules += len(cfg.Rules.Rules(d))
	}
	fmt.Fprintf(stdout, "%s: OK (%s, %s)\n", path, plural(len(domains), "domain"), plural(rules, "rule"))
	return nil
}

// plural formats n and noun, e.g. "1 domain" or "3 rules".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
