package envcompat

import (
	"errors"
	"maps"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/extauthz/extauthz/internal/golden"
	"github.com/extauthz/extauthz/pkg/config"
)

// base is a minimal working environment: Redis over TCP, statsd off, and
// the runtime directory of testdata.
var base = map[string]string{
	"REDIS_SOCKET_TYPE":    "tcp",
	"REDIS_URL":            "127.0.0.1:6379",
	"USE_STATSD":           "false",
	"RUNTIME_ROOT":         "testdata/runtime",
	"RUNTIME_SUBDIRECTORY": "ratelimit",
}

// with returns base with over applied ("" deletes a variable).
func with(over map[string]string) Getenv {
	env := maps.Clone(base)
	for k, v := range over {
		if v == "" {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	return func(k string) string { return env[k] }
}

func generate(t *testing.T, env Getenv) *Result {
	t.Helper()
	res, err := Generate(env)
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	return res
}

// loads checks that doc loads with the ordinary config loader, as serve and
// validate load it.
func loads(t *testing.T, doc []byte) {
	t.Helper()
	if _, err := config.Load(strings.NewReader(string(doc)), "from-env.yaml"); err != nil {
		t.Fatalf("the generated file does not load: %v\n%s", err, doc)
	}
}

// TestGolden: `extauthz config from-env` output for whole deployments, and
// each loads with the config loader.
func TestGolden(t *testing.T) {
	tests := map[string]map[string]string{
		"minimal": {},
		"full": {
			"HOST": "127.0.0.1", "PORT": "18080", "GRPC_HOST": "::1", "GRPC_PORT": "18081",
			"GRPC_MAX_CONNECTION_AGE": "30m", "GRPC_MAX_CONNECTION_AGE_GRACE": "90s",
			"LOG_LEVEL": "debug", "LOG_FORMAT": "JSON", "NEAR_LIMIT_RATIO": "0.9",
			"STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT": "true", "LIMIT_RESPONSE_HEADERS_ENABLED": "true",
			"LIMIT_REMAINING_HEADER": "X-Left", "CACHE_KEY_PREFIX": "rl_", "LOCAL_CACHE_SIZE_IN_BYTES": "1048576",
			"REDIS_TYPE": "sentinel", "REDIS_URL": "mymaster,10.0.0.1:26379,10.0.0.2:26379", "REDIS_AUTH": "hunter2",
			"REDIS_POOL_SIZE": "20", "REDIS_TIMEOUT": "2s",
			"REDIS_PERSECOND": "true", "REDIS_PERSECOND_TYPE": "CLUSTER", "REDIS_PERSECOND_URL": "10.0.1.1:6379,10.0.1.2:6379",
			"REDIS_PERSECOND_AUTH": "other",
			"RUNTIME_APPDIRECTORY": "config", "RUNTIME_IGNOREDOTFILES": "true", "RUNTIME_WATCH_ROOT": "false",
			"DEBUG_PORT": "6071", "EXPIRATION_JITTER_MAX_SECONDS": "60", "REDIS_PIPELINE_WINDOW": "150us",
			"USE_PROMETHEUS": "true", "PROMETHEUS_ADDR": "127.0.0.1:9090",
		},
		"user_password": {"REDIS_AUTH": "rl:s3cr:et"},
		"tls": {
			"GRPC_SERVER_USE_TLS": "true", "GRPC_SERVER_TLS_CERT": "/tls/tls.crt", "GRPC_SERVER_TLS_KEY": "/tls/tls.key",
			"GRPC_CLIENT_TLS_CACERT": "/tls/ca.crt",
		},
		"xds": {
			"CONFIG_TYPE": "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_URL": "xds.svc:18000", "CONFIG_GRPC_XDS_NODE_ID": "rl",
			"CONFIG_GRPC_XDS_NODE_METADATA": "zone=eu-1", "FORCE_START_WITHOUT_INITIAL_CONFIG": "true",
			"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL": "2s", "XDS_CLIENT_BACKOFF_MAX_INTERVAL": "1m",
		},
		"tracing": {
			"TRACING_ENABLED": "true", "TRACING_EXPORTER_PROTOCOL": "grpc", "TRACING_SAMPLING_RATE": "0.25",
			"TRACING_SERVICE_NAMESPACE": "edge",
		},
		"modes": {"SHADOW_MODE": "true", "QUOTA_MODE": "true", "RESPONSE_DYNAMIC_METADATA": "true", "MERGE_DOMAIN_CONFIG": "true"},
	}
	for _, name := range slices.Sorted(maps.Keys(tests)) {
		t.Run(name, func(t *testing.T) {
			res := generate(t, with(tests[name]))
			golden.Check(t, filepath.Join("testdata", name+".yaml"), string(res.YAML))
			// password_env is read from the process environment, where serve
			// finds the variables.
			for _, v := range []string{"REDIS_AUTH", "REDIS_PERSECOND_AUTH"} {
				if x := tests[name][v]; x != "" {
					t.Setenv(v, x)
				}
			}
			if name == "tls" {
				return // the certificate files do not exist here (the e2e tests serve TLS)
			}
			loads(t, res.YAML)
		})
	}
}

// TestSecrets: a plain REDIS_AUTH stays in the environment; user:password
// must be written out, and Result says so.
func TestSecrets(t *testing.T) {
	res := generate(t, with(map[string]string{"REDIS_AUTH": "hunter2"}))
	if res.Secret || strings.Contains(string(res.YAML), "hunter2") {
		t.Errorf("a plain password is printed or flagged:\n%s", res.YAML)
	}
	if !strings.Contains(string(res.YAML), "password_env: REDIS_AUTH") {
		t.Errorf("want password_env: REDIS_AUTH:\n%s", res.YAML)
	}
	res = generate(t, with(map[string]string{"REDIS_AUTH": "user:pa:ss"}))
	if !res.Secret || !strings.Contains(string(res.YAML), `username: "user"`) || !strings.Contains(string(res.YAML), `password: "pa:ss"`) {
		t.Errorf("user:password: Secret %v, YAML:\n%s", res.Secret, res.YAML)
	}
}

// TestProblemsAtOnce: every variable that cannot be honoured is named in
// one error.
func TestProblemsAtOnce(t *testing.T) {
	env := with(map[string]string{
		"USE_STATSD": "true", "STATSD_HOST": "statsd", "GRPC_UDS": "/tmp/rl.sock",
		"LOG_LEVEL": "verbose", "PORT": "http",
		"REDIS_TLS":                            "true",
		"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION": "true", "GRPC_SERVER_USE_TLS": "yes please",
		"REDIS_POOL_ON_EMPTY_BEHAVIOR": "ERROR", "PROMETHEUS_MAPPER_YAML": "/m.yaml",
		"TRACING_ENABLED": "true", "TRACING_EXPORTER_PROTOCOL": "udp",
	})
	_, err := Generate(env)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("got %v, want an *Error", err)
	}
	msg := err.Error()
	for _, want := range []string{"USE_STATSD=true", "STATSD_HOST", "GRPC_UDS", "TRACING_EXPORTER_PROTOCOL=udp", "LOG_LEVEL=verbose", "PORT=http",
		"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION=true", `GRPC_SERVER_USE_TLS="yes please"`, "REDIS_POOL_ON_EMPTY_BEHAVIOR=ERROR",
		"PROMETHEUS_MAPPER_YAML", "extauthz config from-env"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error does not name %s:\n%s", want, msg)
		}
	}
	if got := len(e.Problems); got != 9 {
		t.Errorf("%d problems, want 9:\n%s", got, msg)
	}
}

func TestMemcache(t *testing.T) {
	_, err := Generate(with(map[string]string{"BACKEND_TYPE": "memcache", "MEMCACHE_HOST_PORT": "mc:11211"}))
	if err == nil || !strings.Contains(err.Error(), "BACKEND_TYPE=memcache, MEMCACHE_HOST_PORT: extauthz has no memcache backend") {
		t.Errorf("got %v", err)
	}
}

func TestDetect(t *testing.T) {
	if got := Detect(func(string) string { return "" }); got != nil {
		t.Errorf("empty environment: %v", got)
	}
	env := map[string]string{"PATH": "/bin", "REDIS_URL": "r:6379", "RUNTIME_ROOT": "/data", "EXTAUTHZ_CONFIG": ""}
	if got := Detect(func(k string) string { return env[k] }); !slices.Equal(got, []string{"RUNTIME_ROOT", "REDIS_URL"}) {
		t.Errorf("Detect: %v", got)
	}
}

// TestHostileValues: no value can add a key, break the YAML or end a
// comment; each comes back exactly as given.
func TestHostileValues(t *testing.T) {
	hostile := []string{
		"x\nshadow_mode: true", "x\"\nadmin: {}", "a # b", "'; rm -rf /", "\x00\x1b[31m", "{[&*!|>%@`", "é\u2028\u2029z",
		strings.Repeat("a", 10000),
	}
	for _, v := range hostile {
		for _, name := range []string{"HOST", "RUNTIME_ROOT", "RUNTIME_SUBDIRECTORY", "CACHE_KEY_PREFIX", "LIMIT_LIMIT_HEADER", "REDIS_AUTH"} {
			env := with(map[string]string{name: v, "LIMIT_RESPONSE_HEADERS_ENABLED": "true", "REDIS_AUTH": "u:p"})
			if name == "REDIS_AUTH" {
				env = with(map[string]string{"REDIS_AUTH": "u:" + v})
			}
			res := generate(t, env)
			checkDoc(t, res.YAML)
			want := v
			if name == "HOST" {
				want = net.JoinHostPort(v, "8080")
			}
			if !strings.Contains(string(res.YAML), quote(want)) {
				t.Errorf("%s=%.40q: value not written quoted", name, v)
			}
		}
	}
}

// allowedKeys are the top-level keys Generate may write.
var allowedKeys = []string{"http_addr", "grpc_addr", "grpc", "tls", "log", "near_limit_ratio", "count_mode", "response_headers",
	"shadow_mode", "quota_mode", "response_dynamic_metadata", "merge_domain_config", "metrics", "rules_xds", "tracing", "readiness", "backends", "chains", "chains_by_unit", "runtime"}

// checkDoc parses doc and checks its top-level keys.
func checkDoc(t *testing.T, doc []byte) {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		t.Fatalf("the generated YAML does not parse: %v\n%s", err, doc)
	}
	for k := range m {
		if !slices.Contains(allowedKeys, k) {
			t.Fatalf("unexpected top-level key %q in\n%s", k, doc)
		}
	}
}
