package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/wire"
)

const testRules = `domains:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 10}
`

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "extauthz.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRun(t *testing.T) {
	good := writeConfig(t, testRules)
	bad := writeConfig(t, "grpc_addr: 1\nnope: true\n")
	withAuthz := writeConfig(t, explainAuthzConfig)
	withXDS := writeConfig(t, "rules_xds: {address: 127.0.0.1:18000}\n")
	idleLease := writeConfig(t, strings.Replace(testRules, "10}", "10, lease: {}}", 1))
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	tests := []struct {
		name       string
		args       []string
		getenv     func(string) string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{name: "no command", wantCode: 2, wantStderr: "Usage:"},
		{name: "unknown command", args: []string{"nope"}, wantCode: 2, wantStderr: `unknown command "nope"`},
		{name: "help", args: []string{"help"}, wantStdout: "Usage:"},
		{name: "version", args: []string{"version"}, wantStdout: "extauthz "},
		{name: "version with arguments", args: []string{"version", "x"}, wantCode: 2},
		{name: "validate good", args: []string{"validate", "--config", good}, wantStdout: "OK (1 domain, 1 rule)"},
		{name: "validate rules_xds", args: []string{"validate", "--config", withXDS}, wantStdout: `OK (0 domains, 0 rules)
rules come from the xDS management server at 127.0.0.1:18000 (node_id "default")`},
		{name: "validate idle lease", args: []string{"validate", "--config", idleLease}, wantStdout: "OK (1 domain, 1 rule)\nnote: " + idleLease +
			":4:9: rule edge.remote_address: lease has no effect: chain default has no redis backend to lease from (add one to the chain, or remove lease)\n"},
		{name: "validate from env", args: []string{"validate"}, getenv: env(envConfig, good), wantStdout: "OK"},
		{name: "validate flag wins over env", args: []string{"validate", "-config", good}, getenv: env(envConfig, bad), wantStdout: "OK"},
		{name: "validate bad", args: []string{"validate", "--config", bad}, wantCode: 1, wantStderr: bad + ":2:1: nope: unknown field"},
		{name: "validate missing file", args: []string{"validate", "--config", bad + ".missing"}, wantCode: 1, wantStderr: "no such file"},
		{name: "validate without config", args: []string{"validate"}, wantCode: 2, wantStderr: "--config (or EXTAUTHZ_CONFIG) is required"},
		{name: "validate extra argument", args: []string{"validate", "--config", good, "extra"}, wantCode: 2, wantStderr: "unexpected arguments: extra"},
		{name: "validate help", args: []string{"validate", "-h"}, wantCode: 0, wantStderr: "Usage: extauthz validate"},
		{name: "explain", args: []string{"explain", "--config", good, "--domain", "edge", "--descriptor", "remote_address=1.2.3.4"},
			wantStdout: "counted by edge.remote_address: 10 per minute, fixed_window"},
		{name: "explain without descriptor", args: []string{"explain", "--config", good, "--domain", "edge"}, wantCode: 2, wantStderr: "at least one --descriptor"},
		{name: "explain request", args: []string{"explain", "--config", withAuthz, "--header", "x-forwarded-for:198.51.100.7", "--path", "/"},
			wantStdout: "client ip: 198.51.100.7"},
		{name: "explain request and descriptor", args: []string{"explain", "--config", withAuthz, "--domain", "edge", "--descriptor", "a=b", "--path", "/"},
			wantCode: 2, wantStderr: "give either --domain and --descriptor, or a request"},
		{name: "explain request without authz", args: []string{"explain", "--config", good, "--path", "/"},
			wantCode: 1, wantStderr: "need an authz: section"},
		{name: "explain bad descriptor", args: []string{"explain", "--config", good, "--domain", "edge", "--descriptor", "x"}, wantCode: 2, wantStderr: "has no '='"},
		{name: "serve bad config", args: []string{"serve", "--config", bad}, wantCode: 1, wantStderr: "nope: unknown field"},
		{name: "serve bad log format", args: []string{"serve", "--config", good, "--log-format", "xml"}, wantCode: 2, wantStderr: "want text or json"},
		{name: "serve bad env address", args: []string{"serve"}, getenv: env(envConfig, good, envGRPCAddr, "nonsense"), wantCode: 1, wantStderr: "grpc listener"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.getenv == nil {
				tc.getenv = env()
			}
			var stdout, stderr bytes.Buffer
			code := exitCode(run(context.Background(), tc.args, tc.getenv, &stdout, &stderr), &stderr)
			if code != tc.wantCode {
				t.Errorf("got exit %d, want %d (stderr %q)", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Errorf("got stdout %q, want it to contain %q", stdout.String(), tc.wantStdout)
			}
			if !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("got stderr %q, want it to contain %q", stderr.String(), tc.wantStderr)
			}
		})
	}
}

func TestFromEnv(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.String("a", "", "")
	b := fs.String("b", "", "")
	c := fs.String("c", "default", "")
	if err := fs.Parse([]string{"-a", "flag"}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"A": "env-a", "B": "env-b"}
	if err := fromEnv(fs, func(k string) string { return env[k] }, map[string]string{"a": "A", "b": "B", "c": "C"}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(*a, " ", *b, " ", *c); got != "flag env-b default" {
		t.Errorf("got %q, want %q (flag, then environment, then default)", got, "flag env-b default")
	}
}

func TestSettings(t *testing.T) {
	cfg, err := config.Load(strings.NewReader(`count_mode: if_all_allowed
near_limit_ratio: 0.5
response_headers: {enabled: true, draft: true, reset_header: X-Reset}
over_limit_body: true
failure_mode: closed
domain_failure_modes: {edge: open}
breaker: {open_for: 3s}
`+testRules), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	st, err := wire.Settings(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.CountMode != limiter.CountIfAllAllowed || st.NearLimitRatio != 0.5 || !st.OverLimitBody {
		t.Errorf("got %+v, want count mode, ratio and body from the file", st)
	}
	if h := st.Headers; !h.Enabled || !h.Draft || h.ResetHeader != "X-Reset" || h.LimitHeader != server.DefaultLimitHeader {
		t.Errorf("got headers %+v", h)
	}
	if st.Failure.Default != chain.FailClosed || st.Failure.For("edge") != chain.FailOpen || st.FailClosedRetryAfter != 3*time.Second {
		t.Errorf("got failure policy %+v, retry %v", st.Failure, st.FailClosedRetryAfter)
	}
	if _, err := wire.NewSnapshot(cfg); err != nil {
		t.Errorf("wire.NewSnapshot: %v", err)
	}
}

func TestNewBackends(t *testing.T) {
	log := slogDiscard()
	tests := []struct {
		name      string
		backends  string
		wantChain bool
	}{
		{name: "default is a lone memory store", backends: ""},
		{name: "one memory backend", backends: "backends: [{type: memory, max_keys: 10}]\n"},
		{name: "redis then memory is a chain", backends: "backends: [{type: redis, url: \"redis://127.0.0.1:1\"}, {type: memory, fair_share: true}]\nreplicas: 3\nreadiness: primary\n", wantChain: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(strings.NewReader(tc.backends+testRules), "test.yaml")
			if err != nil {
				t.Fatal(err)
			}
			bs, err := wire.NewBackends(cfg, log, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer bs.Close()
			if got := bs.Chain != nil; got != tc.wantChain {
				t.Fatalf("got chain %v, want %v (store %T)", got, tc.wantChain, bs.Store)
			}
			if err := bs.Ready(); err != nil {
				t.Errorf("ready at start: %v", err)
			}
			if tc.wantChain {
				if bs.Policy != chain.ReadyPrimary || len(bs.Chain.Statuses()) != 2 {
					t.Errorf("got policy %v, %d backends; want primary, 2", bs.Policy, len(bs.Chain.Statuses()))
				}
			}
		})
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
