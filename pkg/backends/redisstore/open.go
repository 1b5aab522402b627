package redisstore

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Open builds a Store from cfg and opts, in three phases: validate cfg
// (Config.Validate, which fills in its defaults), map it to go-redis's
// options (reading the TLS files), and build the client and the store. It
// does not contact Redis (a sidecar must start while Redis is down; the
// failover chain serves meanwhile): call Ping or LoadScript to check the
// connection. Open sets opts.Prefix and opts.LocalCacheSize from cfg.
func Open(cfg Config, opts Options) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("redisstore: open: %w", err)
	}
	uo, desc, err := cfg.universal()
	if err != nil {
		return nil, fmt.Errorf("redisstore: open: %w", err)
	}
	opts.Prefix = cfg.Prefix
	opts.LocalCacheSize = 0
	if cfg.LocalCache.Enabled {
		opts.LocalCacheSize = cfg.LocalCache.MaxKeys
	}
	return cfg.newStore(uo, desc, opts)
}

// newStore builds the client of cfg's mode from uo and the store on it.
func (cfg *Config) newStore(uo *redis.UniversalOptions, desc string, opts Options) (*Store, error) {
	var client redis.UniversalClient
	var plain *redis.Client
	switch {
	case cfg.Cluster != nil:
		client = redis.NewClusterClient(uo.Cluster())
	case cfg.Sentinel != nil:
		plain = redis.NewFailoverClient(uo.Failover())
		client = plain
	default:
		plain = redis.NewClient(uo.Simple())
		client = plain
	}
	s, err := New(client, opts)
	if err != nil {
		_ = client.Close()
		return nil, err
	}
	s.addr = desc
	if cfg.AutoPipelineOn() && plain != nil {
		// Our own pipeline: no goroutine, allocation or pool check per batch
		// (BENCHMARKS.md), and a call is never written twice.
		o := uo.Simple()
		if cfg.Sentinel != nil {
			o = sentinelOptions(uo.Failover())
		}
		if s.pipe, err = newPipe(o); err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("redisstore: open: pipeline: %w", err)
		}
		s.addr += " (auto pipeline)"
	}
	return s, nil
}

// universal converts a validated cfg to go-redis options and a
// credential-free description.
func (cfg *Config) universal() (*redis.UniversalOptions, string, error) {
	uo := &redis.UniversalOptions{
		Username:        cfg.Username,
		Password:        string(cfg.PasswordValue()),
		PoolSize:        cfg.Pool.Size,
		MinIdleConns:    cfg.Pool.MinIdle,
		PoolTimeout:     cfg.Pool.Timeout,
		DialTimeout:     cfg.Timeouts.Dial,
		ReadTimeout:     cfg.Timeouts.Read,
		WriteTimeout:    cfg.Timeouts.Write,
		DialerRetries:   1, // one attempt: the chain retries later, not the dialer now
		MaxRetries:      -1,
		DisableIdentity: true, // no CLIENT SETINFO on every new connection

		ContextTimeoutEnabled: true,
	}
	if cfg.MaxRetries > 0 {
		uo.MaxRetries = cfg.MaxRetries
	}
	var desc, urlServerName string
	var urlTLS bool
	switch {
	case cfg.URL != "":
		var err error
		if desc, urlTLS, urlServerName, err = cfg.standalone(uo); err != nil {
			return nil, "", err
		}
	case cfg.Sentinel != nil:
		s := cfg.Sentinel
		uo.MasterName, uo.Addrs, uo.DB = s.MasterName, s.Addrs, s.DB
		uo.SentinelUsername, uo.SentinelPassword = s.Username, string(s.Password)
		desc = "sentinel " + s.MasterName + "@" + strings.Join(s.Addrs, ",") + "/" + strconv.Itoa(s.DB)
	default:
		uo.Addrs = cfg.Cluster.Addrs
		desc = "cluster " + strings.Join(cfg.Cluster.Addrs, ",")
	}
	if err := cfg.credentials(uo); err != nil {
		return nil, "", err
	}
	if cfg.TLS.on() || urlTLS {
		tc, err := cfg.TLS.Config()
		if err != nil {
			return nil, "", fmt.Errorf("tls: %w", err)
		}
		if tc == nil { // on by the rediss:// URL or insecure_skip_verify alone
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if tc.ServerName == "" {
			tc.ServerName = urlServerName
		}
		tc.InsecureSkipVerify = cfg.TLS.InsecureSkipVerify //nolint:gosec // opt-in, documented as tests only
		uo.TLSConfig = tc
		desc += " (tls)"
	}
	return uo, desc, nil
}

// standalone sets uo's address, database and URL credentials from cfg.URL;
// it returns the description, and whether and for which name the URL asks
// for TLS.
func (cfg *Config) standalone(uo *redis.UniversalOptions) (desc string, tlsOn bool, serverName string, err error) {
	o, err := redis.ParseURL(string(cfg.URL))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error quotes the whole URL, password included
		}
		return "", false, "", fmt.Errorf("url %s: %w", cfg.URL, err)
	}
	uo.Addrs = []string{o.Addr}
	uo.DB = o.DB
	if o.Network == "unix" {
		// UniversalOptions has no network: dial the socket ourselves.
		path, timeout := o.Addr, cfg.Timeouts.Dial
		uo.Dialer = func(ctx context.Context, _, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: timeout}
			return d.DialContext(ctx, "unix", path)
		}
	}
	if uo.Username == "" {
		uo.Username = o.Username
	}
	if uo.Password == "" {
		uo.Password = o.Password
	}
	if o.TLSConfig != nil {
		tlsOn, serverName = true, o.TLSConfig.ServerName
	}
	return o.Addr + "/" + strconv.Itoa(o.DB), tlsOn, serverName, nil
}

// credentials makes uo read PasswordFile at every new connection.
func (cfg *Config) credentials(uo *redis.UniversalOptions) error {
	if cfg.PasswordFile == "" {
		return nil
	}
	path, user := cfg.PasswordFile, uo.Username
	if _, err := readSecret(path); err != nil {
		return fmt.Errorf("password file: %w", err)
	}
	uo.Password = ""
	uo.CredentialsProviderContext = func(context.Context) (string, string, error) {
		p, err := readSecret(path)
		if err != nil {
			return "", "", fmt.Errorf("password file: %w", err)
		}
		return user, p, nil
	}
	return nil
}

// readSecret reads a password file (Validate checks it so); the error
// names the file, never its contents.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// RedactURL returns u with any password replaced by "xxxxx", for logs and
// error messages. Text that does not parse as a URL is replaced whole.
func RedactURL(u string) string {
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok {
		return "<unparsable url>"
	}
	host := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host = rest[:i]
	}
	at := strings.LastIndex(host, "@")
	if at < 0 {
		return u
	}
	user, _, hasPass := strings.Cut(host[:at], ":")
	if !hasPass {
		return u
	}
	return scheme + "://" + user + ":xxxxx" + rest[at:]
}
