package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// RedisBackend holds the settings of a backend of type redis. Backend
// inlines it, so its keys sit next to "type"; they are rejected on backends
// of another type. Exactly one of url, sentinel or cluster is set:
//
//	backends:
//	  - type: redis
//	    url: redis://127.0.0.1:6379/0      # standalone; rediss:// for TLS; user:password@ allowed
//	    # sentinel: {master_name: mymaster, addrs: [10.0.0.1:26379], db: 0, username: "", password: ""}
//	    # cluster: {addrs: [10.0.0.1:6379, 10.0.0.2:6379]}
//	    username: ""                       # ACL user (overrides the url's)
//	    password: ""                       # or password_env: NAME, or password_file: PATH
//	    password_env: REDIS_PASSWORD       # read once at load
//	    password_file: /run/secrets/redis  # read at every new connection (rotation)
//	    tls: {enabled: false, ca_file: "", cert_file: "", key_file: "", server_name: "", insecure_skip_verify: false}
//	    pool: {size: 0, min_idle: 0, timeout: 100ms}   # size 0: 10 per CPU
//	    timeouts: {dial: 250ms, read: 100ms, write: 100ms}
//	    max_retries: 0
//	    auto_pipeline: true                # batch concurrent calls' writes (url, sentinel; default on)
//	    prefix: "extauthz:"
//	    local_cache: {enabled: false, max_keys: 100000}
//
// Secrets are Secret values (or, for the url, RedisURL), so Config.Redacted
// hides them. File paths are used as written (relative to the working
// directory).
type RedisBackend struct {
	// URL is a standalone server: redis://[[user]:password@]host[:port][/db]
	// or rediss://... (TLS). Query parameters are not accepted.
	URL RedisURL `yaml:"url"`
	// Sentinel selects Sentinel mode.
	Sentinel *RedisSentinel `yaml:"sentinel"`
	// Cluster selects Cluster mode.
	Cluster *RedisCluster `yaml:"cluster"`

	// Username and Password authenticate to the data nodes; they override
	// credentials in URL. PasswordEnv names an environment variable holding
	// the password, read at load; PasswordFile a file read at every new
	// connection. At most one of Password, PasswordEnv and PasswordFile.
	Username     string `yaml:"username"`
	Password     Secret `yaml:"password"`
	PasswordEnv  string `yaml:"password_env"`
	PasswordFile string `yaml:"password_file"`

	// TLS configures TLS (a rediss:// URL turns it on as well).
	TLS RedisTLS `yaml:"tls"`
	// Pool sizes the connection pool of each node.
	Pool RedisPool `yaml:"pool"`
	// Timeouts are the socket timeouts; the chain's call_timeout bounds
	// each call as well.
	Timeouts RedisTimeouts `yaml:"timeouts"`
	// MaxRetries is how many times a failed command is retried (default 0:
	// a retried script whose reply was lost would count twice).
	MaxRetries int `yaml:"max_retries"`
	// AutoPipeline batches the script calls of concurrent requests into
	// shared pipelined writes: each request is still one call and one round
	// trip, with far fewer system calls under load (see BENCHMARKS.md).
	// Unset means on for url and sentinel; false turns it off. Cluster does
	// not support it (true is an error there). Read it with
	// AutoPipelineOn.
	AutoPipeline *bool `yaml:"auto_pipeline"`
	// Prefix starts every Redis key (default "extauthz:"); no braces.
	Prefix string `yaml:"prefix"`
	// LocalCache answers keys known to be over their limit without a round
	// trip, until they admit a hit again.
	LocalCache RedisLocalCache `yaml:"local_cache"`

	// envPassword is PasswordEnv's value, read by validate.
	envPassword Secret
}

// AutoPipelineOn reports whether calls are auto-pipelined: AutoPipeline if
// set, else true except in Cluster mode.
func (r *RedisBackend) AutoPipelineOn() bool {
	if r.AutoPipeline != nil {
		return *r.AutoPipeline
	}
	return r.Cluster == nil
}

// RedisSentinel selects a master through Redis Sentinel.
type RedisSentinel struct {
	// MasterName is the name the sentinels monitor the master under.
	MasterName string `yaml:"master_name"`
	// Addrs are sentinel addresses, host:port.
	Addrs []string `yaml:"addrs"`
	// DB is the database number (default 0).
	DB int `yaml:"db"`
	// Username and Password authenticate to the sentinels themselves.
	Username string `yaml:"username"`
	Password Secret `yaml:"password"`
}

// RedisCluster selects Redis Cluster mode.
type RedisCluster struct {
	// Addrs are some of the cluster's nodes, host:port; the rest are
	// discovered.
	Addrs []string `yaml:"addrs"`
}

// RedisTLS configures the client side of TLS.
type RedisTLS struct {
	Enabled  bool   `yaml:"enabled"`
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the server's certificate.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify disables certificate checks: tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// RedisPool sizes each node's connection pool.
type RedisPool struct {
	// Size is the number of connections (default 0: 10 per CPU).
	Size int `yaml:"size"`
	// MinIdle connections are kept open while idle (default 0).
	MinIdle int `yaml:"min_idle"`
	// Timeout is how long a call waits for a free connection (default: the
	// read timeout).
	Timeout time.Duration `yaml:"timeout"`
}

// RedisTimeouts are socket timeouts; defaults suit a sidecar (see
// redisstore's package defaults): dial 250ms, read and write 100ms.
type RedisTimeouts struct {
	Dial  time.Duration `yaml:"dial"`
	Read  time.Duration `yaml:"read"`
	Write time.Duration `yaml:"write"`
}

// RedisLocalCache configures the local over-limit cache.
type RedisLocalCache struct {
	Enabled bool `yaml:"enabled"`
	// MaxKeys bounds the cache (default 100000).
	MaxKeys int `yaml:"max_keys"`
}

// Defaults of RedisBackend (the same values as redisstore's).
const (
	DefaultRedisPrefix       = "extauthz:"
	DefaultRedisDialTimeout  = 250 * time.Millisecond
	DefaultRedisReadTimeout  = 100 * time.Millisecond
	DefaultRedisWriteTimeout = 100 * time.Millisecond
	DefaultRedisCacheKeys    = 100_000
)

// RedisURL is a Redis URL that prints with its password replaced by
// "xxxxx" (fmt, Config.Redacted). Use string(u) to read it.
type RedisURL string

// String returns the URL with its password redacted.
func (u RedisURL) String() string {
	if u == "" {
		return ""
	}
	p, err := url.Parse(string(u))
	if err != nil {
		return "<invalid url>"
	}
	return p.Redacted()
}

// MarshalText returns the redacted URL, never the password.
func (u RedisURL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// PasswordValue returns the data nodes' password: Password, or the value of
// PasswordEnv read at load. It is empty when PasswordFile is used (the
// store reads the file itself) or nothing is set.
func (r *RedisBackend) PasswordValue() Secret {
	if r.Password != "" {
		return r.Password
	}
	return r.envPassword
}

// setDefaults fills in the defaults of a redis backend.
func (r *RedisBackend) setDefaults() {
	setDefault(&r.Prefix, DefaultRedisPrefix)
	setDefault(&r.Timeouts.Dial, DefaultRedisDialTimeout)
	setDefault(&r.Timeouts.Read, DefaultRedisReadTimeout)
	setDefault(&r.Timeouts.Write, DefaultRedisWriteTimeout)
	setDefault(&r.Pool.Timeout, r.Timeouts.Read)
	if r.LocalCache.Enabled {
		setDefault(&r.LocalCache.MaxKeys, DefaultRedisCacheKeys)
	}
}

// validate reports the problems of a redis backend at path (e.g.
// "backends[0]").
func (r *RedisBackend) validate(c *checker, path string) {
	at := func(name string) string { return join(path, name) }
	modes := 0
	for _, set := range []bool{r.URL != "", r.Sentinel != nil, r.Cluster != nil} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		c.errorf(path, "a redis backend needs exactly one of url (standalone), sentinel or cluster; %d are set", modes)
	}
	if r.URL != "" {
		r.validateURL(c, at("url"))
	}
	if s := r.Sentinel; s != nil {
		if s.MasterName == "" {
			c.errorf(at("sentinel.master_name"), "missing: the name the sentinels monitor the master under, e.g. mymaster")
		}
		checkRedisAddrs(c, at("sentinel.addrs"), s.Addrs)
		if s.DB < 0 {
			c.errorf(at("sentinel.db"), "%d is negative: expected a database number, e.g. 0", s.DB)
		}
	}
	if cl := r.Cluster; cl != nil {
		checkRedisAddrs(c, at("cluster.addrs"), cl.Addrs)
		if r.AutoPipeline != nil && *r.AutoPipeline {
			c.errorf(at("auto_pipeline"), "not available with cluster: remove it (it is on by default only for url and sentinel backends)")
		}
	}

	secrets := 0
	for _, set := range []bool{r.Password != "", r.PasswordEnv != "", r.PasswordFile != ""} {
		if set {
			secrets++
		}
	}
	if secrets > 1 {
		c.errorf(path, "set at most one of password, password_env and password_file")
	}
	if r.PasswordEnv != "" {
		v, ok := os.LookupEnv(r.PasswordEnv)
		if !ok || v == "" {
			c.errorf(at("password_env"), "environment variable %s is not set or empty", r.PasswordEnv)
		}
		r.envPassword = Secret(v)
	}
	checkRedisFile(c, at("password_file"), r.PasswordFile)

	t := r.TLS
	checkRedisFile(c, at("tls.ca_file"), t.CAFile)
	checkRedisFile(c, at("tls.cert_file"), t.CertFile)
	checkRedisFile(c, at("tls.key_file"), t.KeyFile)
	if (t.CertFile == "") != (t.KeyFile == "") {
		c.errorf(at("tls"), "set both cert_file and key_file for a client certificate, or neither")
	}

	for _, n := range []struct {
		name string
		v    int
	}{{"pool.size", r.Pool.Size}, {"pool.min_idle", r.Pool.MinIdle}, {"max_retries", r.MaxRetries}, {"local_cache.max_keys", r.LocalCache.MaxKeys}} {
		if n.v < 0 {
			c.errorf(at(n.name), "%d is negative", n.v)
		}
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"pool.timeout", r.Pool.Timeout}, {"timeouts.dial", r.Timeouts.Dial}, {"timeouts.read", r.Timeouts.Read}, {"timeouts.write", r.Timeouts.Write}} {
		if d.v < 0 {
			c.errorf(at(d.name), "%v is negative: expected a duration such as 100ms", d.v)
		}
	}
	if strings.ContainsAny(r.Prefix, "{}") {
		c.errorf(at("prefix"), "%q contains '{' or '}': braces would change the keys' Redis Cluster hash slots", r.Prefix)
	}
}

func (r *RedisBackend) validateURL(c *checker, path string) {
	u, err := url.Parse(string(r.URL))
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		c.errorf(path, "not a URL: expected redis://[user:password@]host:port/db or rediss://...")
		return
	}
	switch {
	case u.Scheme != "redis" && u.Scheme != "rediss":
		c.errorf(path, "scheme %q: expected redis:// or rediss:// (TLS)", u.Scheme)
	case u.Host == "":
		c.errorf(path, "%s has no host: expected redis://host:port/db", r.URL)
	case u.RawQuery != "":
		c.errorf(path, "%s: query parameters are not accepted; use the backend's settings (timeouts, pool, tls)", r.URL)
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 || strings.Contains(db, "/") {
			c.errorf(path, "%s: path %q is not a database number, e.g. /0", r.URL, u.Path)
		}
	}
}

func checkRedisAddrs(c *checker, path string, addrs []string) {
	if len(addrs) == 0 {
		c.errorf(path, "missing: expected a list of host:port addresses")
	}
	for i, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			c.errorf(fmt.Sprintf("%s[%d]", path, i), "%q is not an address: expected host:port, e.g. 10.0.0.1:6379", a)
		}
	}
}

// checkRedisFile reports a set path that cannot be read.
func checkRedisFile(c *checker, path, file string) {
	if file == "" {
		return
	}
	f, err := os.Open(file)
	if err != nil {
		c.errorf(path, "%v", err)
		return
	}
	_ = f.Close()
}

// setDefault sets *p to def when it is the zero value.
func setDefault[T comparable](p *T, def T) {
	var zero T
	if *p == zero {
		*p = def
	}
}
