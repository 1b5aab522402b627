package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

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
	cfg, err := loadConfig(fs, &path, args, getenv, stderr)
	if err != nil {
		return err
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
	if x := cfg.RulesXDS; x != nil {
		fmt.Fprintf(stdout, "rules come from the xDS management server at %s (node_id %q); each update is checked when it arrives\n", x.Address, x.NodeID)
	}
	if len(cfg.Chains) > 0 {
		printChains(stdout, cfg)
	}
	for _, n := range cfg.IdleLeases() {
		fmt.Fprintf(stdout, "note: %s\n", n)
	}
	return nil
}

// printChains lists, for a server file with named chains, each chain's
// backends and the rules it counts ("default" for the backends list).
func printChains(w io.Writer, cfg *config.Config) {
	byChain := map[string][]string{}
	for _, d := range cfg.Rules.Domains() {
		for _, r := range cfg.Rules.Rules(d) {
			if r.Unlimited {
				continue
			}
			ch := r.Chain
			if ch == "" {
				ch = config.DefaultChain
			}
			byChain[ch] = append(byChain[ch], r.Path)
		}
	}
	for _, ch := range cfg.ChainList() {
		var names []string
		for _, b := range ch.Backends {
			names = append(names, b.Name)
		}
		fmt.Fprintf(w, "chain %s [%s]: %s", ch.Name, strings.Join(names, " -> "), plural(len(byChain[ch.Name]), "rule"))
		if len(byChain[ch.Name]) > 0 {
			fmt.Fprintf(w, ": %s", strings.Join(byChain[ch.Name], ", "))
		}
		fmt.Fprintln(w)
	}
	if len(cfg.ChainsByUnit) > 0 {
		var units []string
		for _, u := range slices.Sorted(maps.Keys(cfg.ChainsByUnit)) {
			units = append(units, u+"="+cfg.ChainsByUnit[u])
		}
		fmt.Fprintf(w, "chains by unit (rules that name no chain, and limit overrides): %s\n", strings.Join(units, ", "))
	}
}

// plural formats n and noun, e.g. "1 domain" or "3 rules".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
