package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/envcompat"
)

// refEnv is a reference deployment's environment over a runtime directory
// in a temporary directory; over adds or replaces variables.
func refEnv(t *testing.T, over ...string) func(string) string {
	t.Helper()
	root := t.TempDir()
	app := filepath.Join(root, "ratelimit", "config")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	rule := "domain: edge\ndescriptors:\n  - key: remote_address\n    rate_limit: {unit: second, requests_per_unit: 5}\n"
	if err := os.WriteFile(filepath.Join(app, "edge.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	m := map[string]string{
		"REDIS_SOCKET_TYPE": "tcp", "REDIS_URL": "127.0.0.1:6379", "USE_STATSD": "false",
		"RUNTIME_ROOT": root, "RUNTIME_SUBDIRECTORY": "ratelimit", "RUNTIME_WATCH_ROOT": "false",
	}
	for i := 0; i+1 < len(over); i += 2 {
		m[over[i]] = over[i+1]
	}
	return func(k string) string { return m[k] }
}

func runCmd(t *testing.T, getenv func(string) string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = exitCode(run(context.Background(), args, getenv, &out, &errb), &errb)
	return code, out.String(), errb.String()
}

// TestConfigFromEnv: config from-env prints exactly envcompat's file, and
// validate with the same environment (no --config) loads it, as serve does;
// the printed file validates as a file too.
func TestConfigFromEnv(t *testing.T) {
	env := refEnv(t)
	code, out, stderr := runCmd(t, env, "config", "from-env")
	if code != 0 {
		t.Fatalf("config from-env: exit %d: %s", code, stderr)
	}
	res, err := envcompat.Generate(env)
	if err != nil || out != string(res.YAML) {
		t.Fatalf("config from-env printed\n%s\nwant\n%s (%v)", out, res.YAML, err)
	}
	code, out, stderr = runCmd(t, env, "validate")
	if code != 0 || !strings.Contains(out, envDocName+": OK (1 domain, 1 rule)") || stderr != "" {
		t.Errorf("validate from the environment: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	code, out, stderr = runCmd(t, env, "explain", "--domain", "edge", "--descriptor", "remote_address=10.0.0.1")
	if code != 0 || !strings.Contains(out, "limit: 5 per second") || stderr != "" {
		t.Errorf("explain from the environment: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	file := writeConfig(t, string(res.YAML))
	code, out, stderr = runCmd(t, func(string) string { return "" }, "validate", "--config", file)
	if code != 0 || !strings.Contains(out, ": OK (1 domain, 1 rule)") {
		t.Errorf("validate of the printed file: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// A password that has to be written out is flagged on stderr.
	code, out, stderr = runCmd(t, refEnv(t, "REDIS_AUTH", "rl:secret"), "config", "from-env")
	if code != 0 || !strings.Contains(out, `password: "secret"`) || !strings.Contains(stderr, "holds a password from the environment") {
		t.Errorf("config from-env with REDIS_AUTH=user:password: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCmd(t, refEnv(t, "REDIS_AUTH", "secret"), "config", "from-env")
	if code != 0 || stderr != "" {
		t.Errorf("config from-env with a plain REDIS_AUTH: exit %d, stderr %q (want no warning: it stays in the environment)", code, stderr)
	}
	// CONFIG_TYPE=GRPC_XDS_SOTW: the rules come from rules_xds.
	xds := refEnv(t, "CONFIG_TYPE", "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL", "127.0.0.1:1")
	code, out, stderr = runCmd(t, xds, "validate")
	if code != 0 || !strings.Contains(out, "rules come from the xDS management server at 127.0.0.1:1") {
		t.Errorf("validate with CONFIG_TYPE=GRPC_XDS_SOTW: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// --config wins over the reference's variables.
	code, out, _ = runCmd(t, env, "validate", "--config", writeConfig(t, testRules))
	if code != 0 || strings.Contains(out, envDocName) {
		t.Errorf("validate --config with reference variables set: exit %d, %q", code, out)
	}
}

// TestFromEnvErrors: unsupported variables stop serve, validate and
// config from-env with one message naming all of them; a runtime
// directory that is missing is a config error naming the variables.
func TestFromEnvErrors(t *testing.T) {
	env := refEnv(t, "USE_STATSD", "true", "BACKEND_TYPE", "memcache", "GRPC_UDS", "/tmp/x.sock")
	for _, args := range [][]string{{"serve"}, {"validate"}, {"config", "from-env"}} {
		code, out, stderr := runCmd(t, env, args...)
		if code != 1 || out != "" {
			t.Errorf("%v: exit %d, stdout %q", args, code, out)
		}
		for _, want := range []string{"3 setting(s)", "USE_STATSD=true", "BACKEND_TYPE=memcache", "GRPC_UDS"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("%v: stderr does not name %s:\n%s", args, want, stderr)
			}
		}
	}
	code, _, stderr := runCmd(t, refEnv(t, "RUNTIME_SUBDIRECTORY", "missing"), "serve")
	if code != 1 || !strings.Contains(stderr, "the rule directory does not exist") || !strings.Contains(stderr, "extauthz config from-env") {
		t.Errorf("missing runtime directory: exit %d:\n%s", code, stderr)
	}
	// Without any reference variable, --config is still required.
	code, _, stderr = runCmd(t, func(string) string { return "" }, "serve")
	if code != 2 || !strings.Contains(stderr, "--config (or EXTAUTHZ_CONFIG) is required") {
		t.Errorf("no config: exit %d:\n%s", code, stderr)
	}
}
