package main

import (
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/config"
)

func TestRedisBackendOpens(t *testing.T) {
	t.Setenv("EXTAUTHZ_TEST_REDIS_PW", "env-pw")
	src := `backends:
  - type: redis
    sentinel: {master_name: mymaster, addrs: ["10.0.0.1:26379"], db: 2, username: s, password: sentinel-pw}
    username: app
    password_env: EXTAUTHZ_TEST_REDIS_PW
    tls: {enabled: true, server_name: redis.internal}
    pool: {size: 8, min_idle: 2}
    timeouts: {dial: 1s}
    prefix: "rl:"
    auto_pipeline: true
    local_cache: {enabled: true, max_keys: 500}
`
	cfg, err := config.Load(strings.NewReader(src), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The server file maps straight onto redisstore.Config: no bridge.
	rc := cfg.Backends[0].Redis
	if got := string(rc.PasswordValue()); got != "env-pw" {
		t.Errorf("PasswordValue: got %q, want the value of password_env", got)
	}
	s, err := redisstore.Open(rc, redisstore.Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if want := "redis sentinel mymaster@10.0.0.1:26379/2 (tls) (auto pipeline)"; s.String() != want {
		t.Errorf("String: got %q, want %q", s.String(), want)
	}
}
