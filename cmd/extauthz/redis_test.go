package main

import (
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/config"
)

func TestRedisStoreConfig(t *testing.T) {
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
	got, opts := redisStoreConfig(cfg.Backends[0].RedisBackend)
	want := redisstore.Config{Sentinel: &redisstore.Sentinel{MasterName: "mymaster", Addrs: []string{"10.0.0.1:26379"}}, DB: 2, SentinelUsername: "s", SentinelPassword: "sentinel-pw", Username: "app", Password: "env-pw", TLS: redisstore.TLS{Enabled: true, ServerName: "redis.internal"}, Pool: redisstore.Pool{Size: 8}, MinIdleConns: 2, PoolTimeout: 100 * time.Millisecond, DialTimeout: time.Second, Timeouts: redisstore.Timeouts{Read: 100 * time.Millisecond}, WriteTimeout: 100 * time.Millisecond}
	if got.MasterName != want.MasterName || strings.Join(got.SentinelAddrs, ",") != strings.Join(want.SentinelAddrs, ",") ||
		got.DB != want.DB || got.SentinelUsername != want.SentinelUsername || got.SentinelPassword != want.SentinelPassword ||
		got.Username != want.Username || got.Password != want.Password || got.TLS != want.TLS ||
		got.PoolSize != want.PoolSize || got.MinIdleConns != want.MinIdleConns || got.PoolTimeout != want.PoolTimeout ||
		got.DialTimeout != want.DialTimeout || got.ReadTimeout != want.ReadTimeout || got.WriteTimeout != want.WriteTimeout ||
		!got.AutoPipeline {
		t.Errorf("redisStoreConfig:\ngot  %+v\nwant %+v", got, want)
	}
	if opts.Prefix != "rl:" || opts.LocalCacheSize != 500 {
		t.Errorf("options: got %+v, want prefix rl: and a cache of 500", opts)
	}
	s, err := redisstore.Open(got, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if want := "redis sentinel mymaster@10.0.0.1:26379/2 (tls) (auto pipeline)"; s.String() != want {
		t.Errorf("String: got %q, want %q", s.String(), want)
	}
}
