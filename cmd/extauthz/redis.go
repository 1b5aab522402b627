package main

import (
	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/config"
)

// redisStoreConfig maps a redis backend entry of the server file to
// redisstore's connection settings and store options. The caller adds the
// metrics hooks (Options.OnCall, OnScriptLoad, OnCacheHit) and then calls
// redisstore.Open, which validates, reads the TLS files and does not
// contact Redis.
func redisStoreConfig(b config.RedisBackend) (redisstore.Config, redisstore.Options) {
	cfg := redisstore.Config{
		URL:          string(b.URL),
		Username:     b.Username,
		Password:     string(b.PasswordValue()),
		PasswordFile: b.PasswordFile,
		TLS: redisstore.TLS{
			Enabled:            b.TLS.Enabled,
			CAFile:             b.TLS.CAFile,
			CertFile:           b.TLS.CertFile,
			KeyFile:            b.TLS.KeyFile,
			ServerName:         b.TLS.ServerName,
			InsecureSkipVerify: b.TLS.InsecureSkipVerify,
		},
		PoolSize:     b.Pool.Size,
		MinIdleConns: b.Pool.MinIdle,
		PoolTimeout:  b.Pool.Timeout,
		DialTimeout:  b.Timeouts.Dial,
		ReadTimeout:  b.Timeouts.Read,
		WriteTimeout: b.Timeouts.Write,
		MaxRetries:   b.MaxRetries,
		AutoPipeline: b.AutoPipeline,
	}
	if s := b.Sentinel; s != nil {
		cfg.MasterName = s.MasterName
		cfg.SentinelAddrs = s.Addrs
		cfg.DB = s.DB
		cfg.SentinelUsername = s.Username
		cfg.SentinelPassword = string(s.Password)
	}
	if c := b.Cluster; c != nil {
		cfg.ClusterAddrs = c.Addrs
	}
	opts := redisstore.Options{Prefix: b.Prefix}
	if b.LocalCache.Enabled {
		opts.LocalCacheSize = b.LocalCache.MaxKeys
	}
	return cfg, opts
}
