package e2e

import (
	"regexp"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := WriteFile(t, dir, "good.yaml", serverConfig)
	WriteFile(t, dir, "rules/edge.yaml", edgeRules)
	bad := WriteFile(t, dir, "bad.yaml", `grpc_addr: 127.0.0.1:1
colour: blue
domains:
  - domain: api
    descriptors:
      - key: a
        rate_limit: {unit: fortnight, requests_per_unit: 5}
      - key: b
        rate_limit: {unit: minute, requests_per_unit: 10, unlimited: true}
`)

	t.Run("good", func(t *testing.T) {
		r := Run(t, extauthzBin, nil, "validate", "--config", good)
		if r.Code != 0 || !strings.Contains(r.Stdout, "OK (1 domain, 7 rules)") {
			t.Errorf("got exit %d, stdout %q, stderr %q; want 0 and a summary", r.Code, r.Stdout, r.Stderr)
		}
	})
	t.Run("good from environment", func(t *testing.T) {
		if r := Run(t, extauthzBin, []string{"EXTAUTHZ_CONFIG=" + good}, "validate"); r.Code != 0 {
			t.Errorf("got exit %d, stderr %q; want 0", r.Code, r.Stderr)
		}
	})
	t.Run("bad reports every problem with its position", func(t *testing.T) {
		r := Run(t, extauthzBin, nil, "validate", "--config", bad)
		if r.Code != 1 {
			t.Errorf("got exit %d, want 1", r.Code)
		}
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		pos := regexp.MustCompile(`^` + regexp.QuoteMeta(bad) + `:\d+:\d+: `)
		for _, want := range []string{`:2:1: colour: unknown field`, `:7:28: domains[0].descriptors[0].rate_limit.unit: unknown unit "fortnight"`, `:9:`} {
			found := false
			for _, l := range lines {
				found = found || strings.Contains(l, want)
			}
			if !found {
				t.Errorf("stderr lacks %q:\n%s", want, r.Stderr)
			}
		}
		for _, l := range lines {
			if !pos.MatchString(l) {
				t.Errorf("line %q is not file:line:col: message", l)
			}
		}
		if len(lines) < 3 {
			t.Errorf("got %d problems, want at least 3:\n%s", len(lines), r.Stderr)
		}
	})
	t.Run("missing flag is a usage error", func(t *testing.T) {
		if r := Run(t, extauthzBin, nil, "validate"); r.Code != 2 || !strings.Contains(r.Stderr, "--config") {
			t.Errorf("got exit %d, stderr %q; want 2 naming --config", r.Code, r.Stderr)
		}
	})
}

func TestExplain(t *testing.T) {
	dir := t.TempDir()
	cfg := WriteFile(t, dir, "extauthz.yaml", serverConfig)
	WriteFile(t, dir, "rules/edge.yaml", edgeRules)
	r := Run(t, extauthzBin, nil, "explain", "--config", cfg, "--domain", "edge",
		"--descriptor", "remote_address=10.0.0.1",
		"--descriptor", "user=alice", "--descriptor", "plan=premium",
		"--descriptor", "client_id=foo,path=/a\\,b",
		"--descriptor", "nope=x")
	if r.Code != 0 {
		t.Fatalf("got exit %d, stderr %q", r.Code, r.Stderr)
	}
	for _, want := range []string{
		"match: rule edge.remote_address",
		"limit: 3 per hour, fixed_window",
		"descriptor 2 (user=alice): edge.user is replaced by premium (descriptor 3) (OK, nothing counted)",
		"descriptor 3 (plan=premium): counted by premium: 100 per minute, fixed_window",
		"descriptor 4 (client_id=foo, path=/a,b): counted by edge.client_id_foo.path: 2 per hour",
		"descriptor 5 (nope=x): not limited",
	} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.Stdout)
		}
	}

	if r := Run(t, extauthzBin, nil, "explain", "--config", cfg, "--domain", "edge", "--descriptor", "novalue"); r.Code != 2 {
		t.Errorf("malformed descriptor: got exit %d, want 2 (stderr %q)", r.Code, r.Stderr)
	}
}

func TestVersionAndUsage(t *testing.T) {
	if r := Run(t, extauthzBin, nil, "version"); r.Code != 0 || !strings.HasPrefix(r.Stdout, "extauthz ") {
		t.Errorf("version: got exit %d, stdout %q", r.Code, r.Stdout)
	}
	if r := Run(t, extauthzBin, nil); r.Code != 2 || !strings.Contains(r.Stderr, "Usage:") {
		t.Errorf("no command: got exit %d, stderr %q; want 2 and usage", r.Code, r.Stderr)
	}
	if r := Run(t, extauthzBin, nil, "frobnicate"); r.Code != 2 || !strings.Contains(r.Stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: got exit %d, stderr %q", r.Code, r.Stderr)
	}
}
