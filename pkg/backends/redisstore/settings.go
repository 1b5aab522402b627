package redisstore

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/secret"
)

// Sidecar defaults for Config. A rate-limit check sits in front of every
// request Envoy forwards, and Envoy gives the whole RPC 20 ms by default, so
// a slow Redis must fail fast and let the failover chain answer:
//   - DefaultDialTimeout: a TCP (and TLS) handshake to a Redis on the same
//     host or in the same zone takes well under 10 ms; 250 ms allows a TLS
//     handshake under load without letting a dead address hold a pool slot
//     (and a health probe) for the go-redis default of 5 s.
//   - DefaultReadTimeout, DefaultWriteTimeout: one script call is a few
//     microseconds of Redis CPU plus a network round trip (< 1 ms on a LAN).
//     The caller's context deadline (Envoy's timeout) is the real bound;
//     100 ms only caps calls without a deadline, such as health probes, and
//     is 5x Envoy's default so that it never fires first.
//   - Pool.Timeout defaults to the read timeout: waiting longer for a free
//     connection than for a reply is pointless.
//   - MaxRetries defaults to 0: a retried script call whose first reply was
//     lost would count its hits twice, and the chain, not the client,
//     decides what to do on errors. Script calls are also marked never to
//     be sent twice (NoRetry), which the Cluster client's own retries on
//     EOF and timeouts (up to MaxRedirects) honour, whatever MaxRetries is.
const (
	DefaultDialTimeout  = 250 * time.Millisecond
	DefaultReadTimeout  = 100 * time.Millisecond
	DefaultWriteTimeout = 100 * time.Millisecond
	// DefaultCacheKeys bounds the local over-limit cache when enabled.
	DefaultCacheKeys = 100_000
)

// Config says how to reach Redis: the settings of a backend of type redis,
// whose keys sit next to "type" in the server file. Exactly one of URL
// (standalone), Sentinel or Cluster is set. Zero values are the documented
// defaults; Validate fills them in.
//
//	backends:
//	  - type: redis
//	    url: redis://127.0.0.1:6379/0      # standalone; rediss:// for TLS; user:password@ allowed
//	    # sentinel: {master_name: mymaster, addrs: [10.0.0.1:26379], db: 0, username: "", password: ""}
//	    # cluster: {addrs: [10.0.0.1:6379, 10.0.0.2:6379]}
//	    username: ""                       # ACL user (overrides the url's)
//	    password: ""                       # or password_env: NAME, or password_file: PATH
//	    password_env: REDIS_PASSWORD       # read once, by Validate
//	    password_file: /run/secrets/redis  # read at every new connection (rotation)
//	    tls: {enabled: false, ca_file: "", cert_file: "", key_file: "", server_name: "", insecure_skip_verify: false}
//	    pool: {size: 0, min_idle: 0, timeout: 100ms}   # size 0: 10 per CPU
//	    timeouts: {dial: 250ms, read: 100ms, write: 100ms}
//	    max_retries: 0
//	    auto_pipeline: true                # batch concurrent calls' writes (url, sentinel; default on)
//	    prefix: "extauthz:"
//	    local_cache: {enabled: false, max_keys: 100000}
//
// Secrets are secret.String values (or, for the url, URL), so they never
// print. File paths are used as written (relative to the working
// directory).
type Config struct {
	// URL is a standalone server: redis://[[user]:password@]host[:port][/db],
	// rediss://... (TLS) or unix:///path/to/redis.sock[?db=N] (a local
	// socket, without TLS). Query parameters are not accepted, but for a
	// socket's db: every setting has its own field.
	URL URL `yaml:"url"`
	// Sentinel selects Sentinel mode.
	Sentinel *Sentinel `yaml:"sentinel"`
	// Cluster selects Cluster mode.
	Cluster *Cluster `yaml:"cluster"`

	// Username and Password authenticate to the data nodes (ACL user or
	// requirepass); they override credentials in URL. PasswordEnv names an
	// environment variable holding the password, read by Validate;
	// PasswordFile a file read at every new connection (trailing newlines
	// trimmed), so a rotated secret is picked up without a restart. At most
	// one of Password, PasswordEnv and PasswordFile.
	Username     string        `yaml:"username"`
	Password     secret.String `yaml:"password"`
	PasswordEnv  string        `yaml:"password_env"`
	PasswordFile string        `yaml:"password_file"`

	// TLS configures TLS (a rediss:// URL turns it on as well).
	TLS TLS `yaml:"tls"`
	// Pool sizes the connection pool of each node.
	Pool Pool `yaml:"pool"`
	// Timeouts are the socket timeouts; the context deadline of each Take
	// (the chain's call_timeout) is honoured as well.
	Timeouts Timeouts `yaml:"timeouts"`
	// MaxRetries is how many times a failed command is retried (default 0;
	// see the package defaults). Script calls are never retried once they
	// may have reached Redis, whatever it says.
	MaxRetries int `yaml:"max_retries"`
	// AutoPipeline batches the script calls of concurrent Takes into shared
	// pipelined writes: fewer system calls and wake-ups on both sides, each
	// Take still one EVALSHA and one round trip, on the store's own pipeline
	// (see README.md). Unset means on for url and sentinel; false turns it
	// off. Cluster does not support it (true is an error there). Read it
	// with AutoPipelineOn.
	AutoPipeline *bool `yaml:"auto_pipeline"`
	// Prefix starts every Redis key (default DefaultPrefix); no braces.
	Prefix string `yaml:"prefix"`
	// LocalCache answers keys known to be over their limit without a round
	// trip, until they admit a hit again.
	LocalCache LocalCache `yaml:"local_cache"`

	// envPassword is PasswordEnv's value, read by Validate.
	envPassword secret.String
}

// Sentinel selects a master through Redis Sentinel.
type Sentinel struct {
	// MasterName is the name the sentinels monitor the master under.
	MasterName string `yaml:"master_name"`
	// Addrs are sentinel addresses, host:port.
	Addrs []string `yaml:"addrs"`
	// DB is the database number (default 0).
	DB int `yaml:"db"`
	// Username and Password authenticate to the sentinels themselves (when
	// they have requirepass); the data nodes use Config's.
	Username string        `yaml:"username"`
	Password secret.String `yaml:"password"`
}

// Cluster selects Redis Cluster mode.
type Cluster struct {
	// Addrs are some of the cluster's nodes, host:port; the rest are
	// discovered.
	Addrs []string `yaml:"addrs"`
}

// TLS configures the client side of TLS connections to Redis: the
// settings of every TLS client of the server (a CA bundle, a client
// certificate, the server name, default the host dialled), and for tests
// only, no verification at all.
type TLS struct {
	certs.ClientSettings `yaml:",inline"`
	// InsecureSkipVerify disables certificate verification. Tests only.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// on reports whether the settings ask for TLS.
func (t *TLS) on() bool { return t.ClientSettings.On() || t.InsecureSkipVerify }

// Pool sizes each node's connection pool.
type Pool struct {
	// Size is the number of connections (default 0: go-redis's 10 per CPU).
	Size int `yaml:"size"`
	// MinIdle connections are kept open while idle (default 0).
	MinIdle int `yaml:"min_idle"`
	// Timeout is how long a call waits for a free connection (default: the
	// read timeout).
	Timeout time.Duration `yaml:"timeout"`
}

// Timeouts are socket timeouts (defaults DefaultDialTimeout,
// DefaultReadTimeout, DefaultWriteTimeout).
type Timeouts struct {
	Dial  time.Duration `yaml:"dial"`
	Read  time.Duration `yaml:"read"`
	Write time.Duration `yaml:"write"`
}

// LocalCache configures the local over-limit cache (Options.LocalCacheSize).
type LocalCache struct {
	Enabled bool `yaml:"enabled"`
	// MaxKeys bounds the cache (default DefaultCacheKeys).
	MaxKeys int `yaml:"max_keys"`
}

// URL is a Redis URL that prints with its password replaced by "xxxxx"
// (fmt, MarshalText). Use string(u) to read it.
type URL string

// String returns the URL with its password redacted (see RedactURL).
func (u URL) String() string {
	if u == "" {
		return ""
	}
	return RedactURL(string(u))
}

// MarshalText returns the redacted URL, never the password.
func (u URL) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// unix reports whether u names a unix socket (unix:///path).
func (u URL) unix() bool { return strings.HasPrefix(string(u), "unix:") }

// AutoPipelineOn reports whether calls are auto-pipelined: AutoPipeline if
// set, else true except in Cluster mode.
func (c *Config) AutoPipelineOn() bool {
	if c.AutoPipeline != nil {
		return *c.AutoPipeline
	}
	return c.Cluster == nil
}

// PasswordValue returns the data nodes' password: Password, or the value of
// PasswordEnv read by Validate. It is empty when PasswordFile is used (the
// store reads the file itself) or nothing is set.
func (c *Config) PasswordValue() secret.String {
	if c.Password != "" {
		return c.Password
	}
	return c.envPassword
}

// Validate fills in the defaults of c's zero values, reads PasswordEnv,
// checks that the files it names can be opened, and returns every problem
// as a *field.Error whose path is relative to c (e.g. "timeouts.read").
func (c *Config) Validate() error {
	c.setDefaults()
	errs := []error{c.validateMode(), c.validateSecrets(), c.validateTLS(), c.validateNumbers()}
	if err := checkPrefix(c.Prefix); err != nil {
		errs = append(errs, field.Errorf("prefix", "%w", err))
	}
	return errors.Join(errs...)
}

func (c *Config) setDefaults() {
	c.Prefix = cmp.Or(c.Prefix, DefaultPrefix)
	c.Timeouts.Dial = cmp.Or(c.Timeouts.Dial, DefaultDialTimeout)
	c.Timeouts.Read = cmp.Or(c.Timeouts.Read, DefaultReadTimeout)
	c.Timeouts.Write = cmp.Or(c.Timeouts.Write, DefaultWriteTimeout)
	c.Pool.Timeout = cmp.Or(c.Pool.Timeout, c.Timeouts.Read)
	if c.LocalCache.Enabled {
		c.LocalCache.MaxKeys = cmp.Or(c.LocalCache.MaxKeys, DefaultCacheKeys)
	}
}

// count returns how many of set are true.
func count(set ...bool) int {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	return n
}

// validateMode checks that exactly one of url, sentinel and cluster is
// set, and that one.
func (c *Config) validateMode() error {
	var errs []error
	if n := count(c.URL != "", c.Sentinel != nil, c.Cluster != nil); n != 1 {
		errs = append(errs, field.Errorf("", "a redis backend needs exactly one of url (standalone), sentinel or cluster; %d are set", n))
	}
	if c.URL != "" {
		errs = append(errs, field.Wrap("url", validateURL(string(c.URL))))
		if c.URL.unix() && c.TLS.on() {
			errs = append(errs, field.Errorf("tls", "not available over a unix socket: remove the tls section, or connect over TCP (rediss://host:port)"))
		}
	}
	if s := c.Sentinel; s != nil {
		if s.MasterName == "" {
			errs = append(errs, field.Errorf("sentinel.master_name", "missing: the name the sentinels monitor the master under, e.g. mymaster"))
		}
		errs = append(errs, field.Wrap("sentinel.addrs", checkAddrs(s.Addrs)))
		if s.DB < 0 {
			errs = append(errs, field.Errorf("sentinel.db", "%d is negative: expected a database number, e.g. 0", s.DB))
		}
	}
	if cl := c.Cluster; cl != nil {
		errs = append(errs, field.Wrap("cluster.addrs", checkAddrs(cl.Addrs)))
		if c.AutoPipeline != nil && *c.AutoPipeline {
			errs = append(errs, field.Errorf("auto_pipeline", "not available with cluster: remove it (it is on by default only for url and sentinel backends)"))
		}
	}
	return errors.Join(errs...)
}

// validateURL checks a standalone URL; its errors never quote the password.
func validateURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Parse's error quotes the whole URL, password included.
		return errors.New("not a URL: expected redis://[user:password@]host:port/db or rediss:// for TLS")
	}
	red := RedactURL(raw)
	if u.Scheme == "unix" {
		return validateSocketURL(u, red)
	}
	var errs []error
	switch {
	case u.Scheme != "redis" && u.Scheme != "rediss":
		errs = append(errs, fmt.Errorf("scheme %q: expected redis://, rediss:// (TLS) or unix:// (a socket)", u.Scheme))
	case u.Host == "":
		errs = append(errs, fmt.Errorf("%s has no host: expected redis://host:port/db", red))
	case u.RawQuery != "" || strings.Contains(raw, "?"):
		errs = append(errs, fmt.Errorf("%s: query parameters are not accepted; use the backend's settings (timeouts, pool, tls)", red))
	}
	if db := strings.Trim(u.Path, "/"); db != "" {
		if n, err := strconv.Atoi(db); err != nil || n < 0 || strings.Contains(db, "/") {
			errs = append(errs, fmt.Errorf("%s: path %q is not a database number, e.g. /0", red, u.Path))
		}
	}
	return errors.Join(errs...)
}

// validateSocketURL checks unix:///path/to/redis.sock[?db=N].
func validateSocketURL(u *url.URL, red string) error {
	if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
		return fmt.Errorf("%s: expected unix:///absolute/path/to/redis.sock (three slashes: no host)", red)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return fmt.Errorf("%s: bad query: expected only ?db=N", red)
	}
	for k, v := range q {
		if k != "db" || len(v) != 1 {
			return fmt.Errorf("%s: query parameter %q is not accepted: only ?db=N; use the backend's settings (timeouts, pool)", red, k)
		}
		if n, err := strconv.Atoi(v[0]); err != nil || n < 0 {
			return fmt.Errorf("%s: db %q is not a database number, e.g. ?db=0", red, v[0])
		}
	}
	return nil
}

// checkAddrs checks a list of host:port addresses; paths are "" (the list)
// and "[i]".
func checkAddrs(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("missing: expected a list of host:port addresses")
	}
	var errs []error
	for i, a := range addrs {
		if _, port, err := net.SplitHostPort(a); err != nil || port == "" {
			errs = append(errs, field.Errorf(fmt.Sprintf("[%d]", i), "%q is not an address: expected host:port, e.g. 10.0.0.1:6379", a))
		}
	}
	return errors.Join(errs...)
}

// validateSecrets checks the password settings and reads PasswordEnv.
func (c *Config) validateSecrets() error {
	var errs []error
	if count(c.Password != "", c.PasswordEnv != "", c.PasswordFile != "") > 1 {
		errs = append(errs, field.Errorf("", "set at most one of password, password_env and password_file"))
	}
	if c.PasswordEnv != "" {
		v, ok := os.LookupEnv(c.PasswordEnv)
		if !ok || v == "" {
			errs = append(errs, field.Errorf("password_env", "environment variable %s is not set or empty", c.PasswordEnv))
		}
		c.envPassword = secret.String(v)
	}
	if c.PasswordFile != "" {
		if _, err := readSecret(c.PasswordFile); err != nil { // as Open reads it
			errs = append(errs, field.Errorf("password_file", "%w", err))
		}
	}
	return errors.Join(errs...)
}

// validateTLS checks that the TLS files come in pairs and load as Open
// loads them: the CA bundle, the client certificate and key.
func (c *Config) validateTLS() error {
	return field.Wrap("tls", c.TLS.Validate())
}

// validateNumbers checks that counts and durations are not negative, and
// that pool sizes fit go-redis's int32.
func (c *Config) validateNumbers() error {
	var errs []error
	for _, n := range []struct {
		path string
		v    int
		max  int
	}{
		{"pool.size", c.Pool.Size, MaxPoolSize},
		{"pool.min_idle", c.Pool.MinIdle, MaxPoolSize},
		{"max_retries", c.MaxRetries, math.MaxInt},
		{"local_cache.max_keys", c.LocalCache.MaxKeys, math.MaxInt},
	} {
		switch {
		case n.v < 0:
			errs = append(errs, field.Errorf(n.path, "%d is negative", n.v))
		case n.v > n.max:
			errs = append(errs, field.Errorf(n.path, "%d is too large: expected at most %d", n.v, n.max))
		}
	}
	for _, d := range []struct {
		path string
		v    time.Duration
	}{{"pool.timeout", c.Pool.Timeout}, {"timeouts.dial", c.Timeouts.Dial}, {"timeouts.read", c.Timeouts.Read}, {"timeouts.write", c.Timeouts.Write}} {
		if d.v < 0 {
			errs = append(errs, field.Errorf(d.path, "%v is negative: expected a duration such as 100ms", d.v))
		}
	}
	return errors.Join(errs...)
}

// MaxPoolSize is the largest pool.size and pool.min_idle: go-redis counts
// connections in an int32 (and refuses, by panicking, a larger pool).
const MaxPoolSize = math.MaxInt32

// checkPrefix rejects a key prefix with braces.
func checkPrefix(p string) error {
	if strings.ContainsAny(p, "{}") {
		return fmt.Errorf("%q contains '{' or '}': braces would change the keys' Redis Cluster hash slots", p)
	}
	return nil
}
