package config

import (
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/pgstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/secret"
)

const routedConfig = `backends:
  - {type: redis, url: "redis://127.0.0.1:6379"}
  - {type: memory, fair_share: true}
chains:
  durable:
    - {type: postgres, name: pg, dsn: "postgres://u:hunter2@db/app", call_timeout: 50ms, max_conns: 8}
    - {type: memory}
chains_by_unit: {month: durable, Year: durable}
domains:
  - domain: edge
    descriptors:
      - key: ip
        rate_limit: {unit: second, requests_per_unit: 10}
      - key: user
        rate_limit: {unit: month, requests_per_unit: 1000}
      - key: plan
        rate_limit: {unit: day, requests_per_unit: 50, chain: durable}
      - key: pinned
        rate_limit: {unit: month, requests_per_unit: 5, chain: default}
`

func TestChainsLoad(t *testing.T) {
	cfg, err := Load(strings.NewReader(routedConfig), "routed.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	list := cfg.ChainList()
	if len(list) != 2 || list[0].Name != DefaultChain || list[1].Name != "durable" {
		t.Fatalf("chains %+v", list)
	}
	var names []string
	for _, c := range list {
		for _, b := range c.Backends {
			names = append(names, b.Name)
		}
	}
	// The second memory backend gets memory#2 across chains.
	if got := strings.Join(names, ","); got != "redis,memory,pg,memory#2" {
		t.Errorf("backend names %s, want redis,memory,pg,memory#2", got)
	}
	pg := list[1].Backends[0]
	if pg.Postgres.DSN != secret.String("postgres://u:hunter2@db/app") || pg.Postgres.MaxConns != 8 ||
		pg.Postgres.Schema != pgstore.DefaultSchema || pg.Failover.CallTimeout != 50*time.Millisecond {
		t.Errorf("postgres settings %+v, failover %+v", pg.Postgres, pg.Failover)
	}
	want := map[string]string{"ip": "", "user": "durable", "plan": "durable", "pinned": ""}
	for _, r := range cfg.Rules.Rules("edge") {
		if r.Chain != want[r.Path[len("edge."):]] {
			t.Errorf("rule %s: chain %q, want %q", r.Path, r.Chain, want[r.Path[len("edge."):]])
		}
	}
	// Overrides of a routed unit go to its chain too.
	if r, ok := cfg.Rules.Override("edge", descriptor.UnitMonth, 1); !ok || r.Chain != "durable" {
		t.Errorf("month override: ok %v, chain %q; want durable", ok, r.Chain)
	}
	if r, ok := cfg.Rules.Override("edge", descriptor.UnitSecond, 1); !ok || r.Chain != "" {
		t.Errorf("second override: ok %v, chain %q; want the default chain", ok, r.Chain)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "hunter2") || !strings.Contains(string(out), "dsn: "+RedactedText) {
		t.Errorf("/config does not redact the dsn:\n%s", out)
	}
}

// TestIdleLeases: a lease on a rule whose chain has no Redis backend is
// noted (it loads and serves; the lease does nothing), on any other rule it
// is not.
func TestIdleLeases(t *testing.T) {
	tests := []struct {
		name, backends string
		want           []string
	}{
		{name: "memory only", backends: "", want: []string{
			"leases.yaml:6:9: rule edge.ip: lease has no effect: chain default has no redis backend to lease from (add one to the chain, or remove lease)",
			"leases.yaml:8:9: rule edge.plan: lease has no effect: chain durable has no redis backend to lease from (add one to the chain, or remove lease)",
		}},
		{name: "redis behind postgres", backends: `backends: [{type: postgres, dsn: "postgres://db/app"}, {type: redis, url: "redis://127.0.0.1:6379"}]`, want: []string{
			"leases.yaml:8:9: rule edge.plan: lease has no effect: chain durable has no redis backend to lease from (add one to the chain, or remove lease)",
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.backends + `
chains: {durable: [{type: memory}]}
domains:
  - domain: edge
    descriptors:
      - key: ip
        rate_limit: {unit: second, requests_per_unit: 10, lease: {}}
      - key: plan
        rate_limit: {unit: day, requests_per_unit: 50, chain: durable, lease: {}}
      - key: user
        rate_limit: {unit: day, requests_per_unit: 50, chain: durable}
`
			cfg, err := Load(strings.NewReader(src), "leases.yaml")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := cfg.IdleLeases(); strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("IdleLeases:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestChainsErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"postgres settings", `backends:
  - type: postgres
    dsn: "postgres://db/app"
    dsn_env: X
    schema: "Bad-Name"
    max_conns: -1
    statement_timeout: 500us
  - {type: memory, call_timeout: 5ms}
`, []string{
			`:3:10: backends[0].dsn: dsn, dsn_file and dsn_env are exclusive: set one`,
			`:5:13: backends[0].schema: "Bad-Name" is not a valid schema name`,
			`:6:16: backends[0].max_conns: -1 is negative`,
			`:7:24: backends[0].statement_timeout: 500µs is below PostgreSQL's resolution of 1ms`,
			`:8:34: backends[1].call_timeout: a memory backend is in process and has no call timeout`,
		}},
		{"postgres dsn missing", `backends: [{type: postgress}, {type: postgres}]
`, []string{
			`:1:19: backends[0].type: unknown backend type "postgress"; did you mean "postgres"?`,
			`:1:31: backends[1].dsn: missing: set one of dsn, dsn_file or dsn_env`,
		}},
		{"redis key on postgres", `backends: [{type: postgres, dsn: "postgres://db/x", url: "redis://x"}]
`, []string{
			`:1:58: backends[0].url: applies only to backends of type redis; this one is of type postgres`,
		}},
		{"chain names", `chains:
  durabel: [{type: memory}]
  default: [{type: memory}]
  empty: []
chains_by_unit: {month: durable, fortnight: durabel}
domains:
  - domain: edge
    descriptors:
      - key: a
        rate_limit: {unit: day, requests_per_unit: 1, chain: durable}
      - key: b
        rate_limit: {unit: day, requests_per_unit: 1, chain: elsewhere}
      - key: c
        rate_limit: {unlimited: true, chain: durabel}
`, []string{
			`:3:12: chains.default: "default" is the backends list's chain`,
			`:4:10: chains.empty: empty chain: list at least one backend`,
			`:5:25: chains_by_unit.month: no chain named "durable"; did you mean "durabel"?`,
			`:5:45: chains_by_unit.fortnight: unknown unit "fortnight"`,
			`:10:62: domains[0].descriptors[0].rate_limit.chain: no chain named "durable"; did you mean "durabel"?`,
			`:12:62: domains[0].descriptors[1].rate_limit.chain: no chain named "elsewhere": expected one of default, durabel, empty`,
			`:14:46: domains[0].descriptors[2].rate_limit.chain: an unlimited rate_limit is never counted: remove chain`,
		}},
		{"duplicate backend names", `backends: [{type: memory, name: store}]
chains:
  d: [{type: memory, name: store}]
`, []string{
			`:3:28: chains.d[0].name: backend name "store" is already used by backends[0]`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.src), "c.yaml")
			if err == nil {
				t.Fatal("Load: no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), "c.yaml"+w) {
					t.Errorf("error does not contain %q; got:\n%v", "c.yaml"+w, err)
				}
			}
		})
	}
}
