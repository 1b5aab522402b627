package config

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// Backend routing. The backends list is the default chain; chains adds
// named ones; a rule picks one with rate_limit.chain or through
// chains_by_unit:
//
//	backends:                 # the default chain: per-second limits
//	  - {type: redis, url: redis://redis:6379}
//	  - {type: memory, fair_share: true}
//	chains:
//	  durable:                # month and year quotas
//	    - {type: postgres, name: pg, dsn_env: EXTAUTHZ_PG_DSN, call_timeout: 50ms}
//	    - {type: memory}
//	chains_by_unit: {month: durable, year: durable}

// DefaultChain is the name of the chain the backends list forms, which
// rate_limit.chain and chains_by_unit may name.
const DefaultChain = "default"

// chainName is what a chain may be called.
var chainName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Chain is one backend chain of the server file, its backends' names
// resolved.
type Chain struct {
	// Name is DefaultChain for the backends list, else the chains key.
	Name string
	// Backends are the chain's entries in order, each with Name set.
	Backends []Backend
}

// ChainList returns every chain: the default chain (the backends list, one
// memory backend when empty), then the chains in name order. Each
// backend's Name is its name, or else its type, then type#2, type#3 ...
// for the next backends of that type, skipping the names set explicitly,
// so that names are unique across chains and the default chain's backends
// keep the names they had before chains existed.
func (cfg *Config) ChainList() []Chain {
	def := cfg.Backends
	if len(def) == 0 {
		def = []Backend{{Type: "memory"}}
	}
	out := []Chain{{Name: DefaultChain, Backends: slices.Clone(def)}}
	for _, name := range slices.Sorted(maps.Keys(cfg.Chains)) {
		out = append(out, Chain{Name: name, Backends: slices.Clone(cfg.Chains[name])})
	}
	taken := map[string]bool{}
	for _, c := range out {
		for _, b := range c.Backends {
			if b.Name != "" {
				taken[b.Name] = true
			}
		}
	}
	count := map[string]int{}
	for _, c := range out {
		for i := range c.Backends {
			b := &c.Backends[i]
			for b.Name == "" {
				count[b.Type]++
				n := b.Type
				if count[b.Type] > 1 {
					n = fmt.Sprintf("%s#%d", b.Type, count[b.Type])
				}
				if !taken[n] {
					b.Name, taken[n] = n, true
				}
			}
		}
	}
	return out
}

// chainNames lists the names a rule may give: DefaultChain and the chains.
func (cfg *Config) chainNames() []string {
	names := []string{DefaultChain}
	for _, n := range slices.Sorted(maps.Keys(cfg.Chains)) {
		if n != DefaultChain {
			names = append(names, n)
		}
	}
	return names
}

// validateChains checks chains and chains_by_unit, and the backends of
// every chain but the default one, and that backend names are unique.
func (cfg *Config) validateChains(c *checker) {
	for _, name := range slices.Sorted(maps.Keys(cfg.Chains)) {
		path := join("chains", name)
		switch {
		case name == DefaultChain:
			c.errorf(path, "%q is the backends list's chain: put these backends there, or name the chain differently", name)
		case !chainName.MatchString(name):
			c.errorf(path, "%q is not a valid chain name: expected lower-case letters, digits, '-' and '_', e.g. durable", name)
		}
		if len(cfg.Chains[name]) == 0 {
			c.errorf(path, "empty chain: list at least one backend, as in backends")
		}
		for i := range cfg.Chains[name] {
			cfg.Chains[name][i].validate(c, fmt.Sprintf("%s[%d]", path, i), i)
		}
	}
	seen := map[string]string{}
	for _, ch := range cfg.ChainList() {
		for i, b := range ch.Backends {
			if prev, dup := seen[b.Name]; dup {
				c.errorf(join(BackendPath(ch.Name, i), "name"), "backend name %q is already used by %s: names are unique across every chain", b.Name, prev)
			}
			seen[b.Name] = BackendPath(ch.Name, i)
		}
	}
	names := cfg.chainNames()
	for _, u := range slices.Sorted(maps.Keys(cfg.ChainsByUnit)) {
		path := join("chains_by_unit", u)
		var unit descriptor.Unit
		if err := unit.UnmarshalText([]byte(u)); err != nil {
			c.errorf(path, "%v", err)
		}
		checkChainName(c, path, cfg.ChainsByUnit[u], names)
	}
}

// backendPath is the key path of the i-th backend of chain name.
func BackendPath(chain string, i int) string {
	if chain == DefaultChain {
		return fmt.Sprintf("backends[%d]", i)
	}
	return fmt.Sprintf("chains.%s[%d]", chain, i)
}

// checkChainName reports at path a chain name that is not in names.
func checkChainName(c *checker, path, name string, names []string) {
	if slices.Contains(names, name) {
		return
	}
	if near := closest(name, names); near != "" {
		c.errorf(path, "no chain named %q; did you mean %q?", name, near)
		return
	}
	c.errorf(path, "no chain named %q: expected one of %s", name, strings.Join(names, ", "))
}

// unitChains maps chains_by_unit onto descriptor units; the default chain
// is "" there. Invalid units were reported by validateChains.
func (cfg *Config) unitChains() map[descriptor.Unit]string {
	if len(cfg.ChainsByUnit) == 0 {
		return nil
	}
	out := make(map[descriptor.Unit]string, len(cfg.ChainsByUnit))
	for u, ch := range cfg.ChainsByUnit {
		var unit descriptor.Unit
		if unit.UnmarshalText([]byte(u)) == nil && ch != DefaultChain {
			out[unit] = ch
		}
	}
	return out
}

// IdleLeases returns a note for each rule whose rate_limit.lease can do
// nothing: leasing takes blocks from a Redis backend, and the rule's chain
// has none (memory and PostgreSQL count every decision exactly; the lease
// is ignored there). The rules load and serve as they are: a rule file may
// be shared by servers with and without Redis.
func (cfg *Config) IdleLeases() []string {
	leasable := map[string]bool{}
	for _, ch := range cfg.ChainList() {
		for _, b := range ch.Backends {
			leasable[ch.Name] = leasable[ch.Name] || b.Type == "redis"
		}
	}
	var out []string
	for _, d := range cfg.Rules.Domains() {
		for _, r := range cfg.Rules.Rules(d) {
			ch := r.Chain
			if ch == "" {
				ch = DefaultChain
			}
			if r.Lease != nil && !leasable[ch] {
				out = append(out, fmt.Sprintf("%s: rule %s: lease has no effect: chain %s has no redis backend to lease from (add one to the chain, or remove lease)", r.Source, r.Path, ch))
			}
		}
	}
	return out
}
