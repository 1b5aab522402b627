package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/redisstore"
)

func loadString(t *testing.T, src string) (*Config, error) {
	t.Helper()
	return Load(strings.NewReader(src), "test.yaml")
}

func TestRedisBackendDecode(t *testing.T) {
	dir := t.TempDir()
	ca, _ := writePair(t, dir, "ca") // the CA bundle must hold a certificate, as Open reads it
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	src := `
backends:
  - type: redis
    url: rediss://app:s3cret@10.0.0.1:6380/2
    username: app
    password_file: ` + pw + `
    tls: {ca_file: ` + ca + `, server_name: redis.internal}
    pool: {size: 32, min_idle: 4}
    timeouts: {dial: 300ms, read: 50ms}
    max_retries: 1
    auto_pipeline: true
    prefix: "rl:"
    local_cache: {enabled: true}
  - type: memory
`
	cfg, err := loadString(t, src)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	r := cfg.Backends[0].Redis
	tests := []struct {
		name      string
		got, want any
	}{
		{name: "url", got: string(r.URL), want: "rediss://app:s3cret@10.0.0.1:6380/2"},
		{name: "username", got: r.Username, want: "app"},
		{name: "password_file", got: r.PasswordFile, want: pw},
		{name: "tls.ca_file", got: r.TLS.CAFile, want: ca},
		{name: "tls.server_name", got: r.TLS.ServerName, want: "redis.internal"},
		{name: "pool.size", got: r.Pool.Size, want: 32},
		{name: "pool.min_idle", got: r.Pool.MinIdle, want: 4},
		{name: "pool.timeout defaults to the read timeout", got: r.Pool.Timeout, want: 50 * time.Millisecond},
		{name: "timeouts.dial", got: r.Timeouts.Dial, want: 300 * time.Millisecond},
		{name: "timeouts.write default", got: r.Timeouts.Write, want: redisstore.DefaultWriteTimeout},
		{name: "max_retries", got: r.MaxRetries, want: 1},
		{name: "auto_pipeline", got: r.AutoPipelineOn(), want: true},
		{name: "prefix", got: r.Prefix, want: "rl:"},
		{name: "local_cache.max_keys default", got: r.LocalCache.MaxKeys, want: redisstore.DefaultCacheKeys},
	}
	for _, tc := range tests {
		if tc.got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, tc.got, tc.want)
		}
	}
}

// TestRedisAutoPipelineDefault: auto pipelining is on unless turned off,
// except for Cluster, which does not support it.
func TestRedisAutoPipelineDefault(t *testing.T) {
	tests := []struct {
		name, backend string
		want          bool
	}{
		{name: "url default", backend: "url: redis://h:1", want: true},
		{name: "url off", backend: "url: redis://h:1\n    auto_pipeline: false", want: false},
		{name: "sentinel default", backend: "sentinel: {master_name: m, addrs: [\"h:1\"]}", want: true},
		{name: "sentinel off", backend: "sentinel: {master_name: m, addrs: [\"h:1\"]}\n    auto_pipeline: false", want: false},
		{name: "cluster default", backend: "cluster: {addrs: [\"h:1\"]}", want: false},
		{name: "cluster off", backend: "cluster: {addrs: [\"h:1\"]}\n    auto_pipeline: false", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadString(t, "backends:\n  - type: redis\n    "+tc.backend+"\n")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if got := cfg.Backends[0].Redis.AutoPipelineOn(); got != tc.want {
				t.Errorf("AutoPipelineOn: got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRedisBackendModes(t *testing.T) {
	t.Setenv("EXTAUTHZ_TEST_REDIS_PW", "from-env")
	tests := []struct {
		name    string
		backend string
		check   func(t *testing.T, r redisstore.Config)
	}{
		{
			name:    "standalone defaults",
			backend: "url: redis://127.0.0.1:6379/0",
			check: func(t *testing.T, r redisstore.Config) {
				if r.Prefix != redisstore.DefaultPrefix || r.Timeouts.Dial != redisstore.DefaultDialTimeout || r.Timeouts.Read != redisstore.DefaultReadTimeout || r.LocalCache.MaxKeys != 0 {
					t.Errorf("defaults: got prefix %q timeouts %+v cache %+v", r.Prefix, r.Timeouts, r.LocalCache)
				}
			},
		},
		{
			name:    "sentinel",
			backend: "sentinel: {master_name: mymaster, addrs: [10.0.0.1:26379, 10.0.0.2:26379], db: 1, password: sentinel-pw}",
			check: func(t *testing.T, r redisstore.Config) {
				s := r.Sentinel
				if s == nil || s.MasterName != "mymaster" || len(s.Addrs) != 2 || s.DB != 1 || s.Password != "sentinel-pw" {
					t.Errorf("sentinel: got %+v", s)
				}
			},
		},
		{
			name:    "cluster with password from env",
			backend: "cluster: {addrs: [10.0.0.1:6379]}\n    password_env: EXTAUTHZ_TEST_REDIS_PW",
			check: func(t *testing.T, r redisstore.Config) {
				if r.Cluster == nil || len(r.Cluster.Addrs) != 1 {
					t.Errorf("cluster: got %+v", r.Cluster)
				}
				if got := string(r.PasswordValue()); got != "from-env" {
					t.Errorf("PasswordValue: got %q, want %q", got, "from-env")
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadString(t, "backends:\n  - type: redis\n    "+tc.backend+"\n")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tc.check(t, cfg.Backends[0].Redis)
		})
	}
}

func TestRedisBackendErrors(t *testing.T) {
	tests := []struct {
		name    string
		backend string
		wantErr []string
	}{
		{name: "no mode", backend: "prefix: x", wantErr: []string{"test.yaml:2:5: backends[0]: a redis backend needs exactly one of url (standalone), sentinel or cluster; 0 are set"}},
		{name: "two modes", backend: "url: redis://h:1\n    cluster: {addrs: [h:2]}", wantErr: []string{"exactly one of url"}},
		{name: "bad scheme", backend: "url: http://h:1", wantErr: []string{`backends[0].url: scheme "http"`}},
		{name: "not a url keeps the password out", backend: "url: \"redis://u:hunter2@h:port\"", wantErr: []string{"backends[0].url: not a URL"}},
		{name: "query", backend: "url: redis://h:1/0?dial_timeout=1s", wantErr: []string{"query parameters are not accepted"}},
		{name: "bad db", backend: "url: redis://h:1/x", wantErr: []string{`path "/x" is not a database number`}},
		{name: "sentinel without name", backend: "sentinel: {addrs: [h:1]}", wantErr: []string{"backends[0].sentinel.master_name: missing"}},
		{name: "sentinel bad addr", backend: "sentinel: {master_name: m, addrs: [nohost]}", wantErr: []string{`backends[0].sentinel.addrs[0]: "nohost" is not an address`}},
		{name: "cluster without addrs", backend: "cluster: {}", wantErr: []string{"backends[0].cluster.addrs: missing"}},
		{name: "two passwords", backend: "url: redis://h:1\n    password: a\n    password_env: B", wantErr: []string{"at most one of password, password_env and password_file"}},
		{name: "env unset", backend: "url: redis://h:1\n    password_env: EXTAUTHZ_TEST_SURELY_UNSET", wantErr: []string{"backends[0].password_env: environment variable EXTAUTHZ_TEST_SURELY_UNSET is not set"}},
		{name: "missing file", backend: "url: redis://h:1\n    tls: {ca_file: /nonexistent/ca.pem}", wantErr: []string{"backends[0].tls.ca_file: certs: stat /nonexistent/ca.pem: no such file"}},
		{name: "cert without key", backend: "url: redis://h:1\n    tls: {cert_file: " + os.Args[0] + "}", wantErr: []string{"backends[0].tls: set both cert_file and key_file"}},
		{name: "negatives", backend: "url: redis://h:1\n    pool: {size: -1}\n    timeouts: {read: -1s}", wantErr: []string{"backends[0].pool.size: -1 is negative", "backends[0].timeouts.read: -1s is negative"}},
		{name: "auto pipeline on a cluster", backend: "cluster: {addrs: [h:1]}\n    auto_pipeline: true", wantErr: []string{"backends[0].auto_pipeline: not available with cluster"}},
		{name: "braces in prefix", backend: "url: redis://h:1\n    prefix: \"a{b}\"", wantErr: []string{`backends[0].prefix: "a{b}" contains '{' or '}'`}},
		{name: "redis key on memory backend", backend: "url: redis://h:1\n  - type: memory\n    prefix: x", wantErr: []string{"backends[1].prefix: applies only to backends of type redis"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadString(t, "backends:\n  - type: redis\n    "+tc.backend+"\n")
			if err == nil {
				t.Fatalf("Load: got nil error, want %q", tc.wantErr)
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load error:\n%v\nwant it to contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Load error leaks the password: %v", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("Load error %v is not a *config.Error", err)
			}
		})
	}
}

func TestRedisBackendRedacted(t *testing.T) {
	t.Setenv("EXTAUTHZ_TEST_REDIS_PW", "env-secret")
	src := `
backends:
  - type: redis
    url: redis://app:url-secret@10.0.0.1:6379/0
    password: yaml-secret
  - type: redis
    sentinel: {master_name: m, addrs: ["10.0.0.1:26379"], password: sentinel-secret}
    password_env: EXTAUTHZ_TEST_REDIS_PW
`
	cfg, err := loadString(t, src)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatalf("Redacted: %v", err)
	}
	for _, secret := range []string{"url-secret", "yaml-secret", "sentinel-secret", "env-secret"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("Redacted output contains %q:\n%s", secret, out)
		}
	}
	for _, want := range []string{"redis://app:xxxxx@10.0.0.1:6379/0", "password: " + RedactedText, "password_env: EXTAUTHZ_TEST_REDIS_PW"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("Redacted output lacks %q:\n%s", want, out)
		}
	}
	if got := string(cfg.Backends[0].Redis.PasswordValue()); got != "yaml-secret" {
		t.Errorf("PasswordValue: got %q, want the configured password", got)
	}
}
