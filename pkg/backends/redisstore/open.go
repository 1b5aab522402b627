package redisstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
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
//   - PoolTimeout defaults to the read timeout: waiting longer for a free
//     connection than for a reply is pointless.
//   - MaxRetries defaults to 0: a retried script call whose first reply was
//     lost would count its hits twice, and the chain, not the client,
//     decides what to do on errors.
const (
	DefaultDialTimeout  = 250 * time.Millisecond
	DefaultReadTimeout  = 100 * time.Millisecond
	DefaultWriteTimeout = 100 * time.Millisecond
)

// Config says how to reach Redis. Exactly one of URL (standalone),
// MasterName with SentinelAddrs (Sentinel) or ClusterAddrs (Cluster) is set.
// Zero values are the documented defaults.
type Config struct {
	// URL of a standalone server: redis://[[user]:password@]host[:port][/db]
	// or rediss://... for TLS. Query parameters are not accepted: every
	// setting has its own field.
	URL string

	// MasterName and SentinelAddrs (host:port) select Sentinel mode;
	// DB is then the database number.
	MasterName    string
	SentinelAddrs []string
	DB            int
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// (when they have requirepass); the data nodes use Username/Password.
	SentinelUsername string
	SentinelPassword string

	// ClusterAddrs (host:port of some nodes) select Cluster mode.
	ClusterAddrs []string

	// Username and Password authenticate to the data nodes (ACL user or
	// requirepass). They override credentials in URL.
	Username string
	Password string
	// PasswordFile, when set, is read at every new connection (trailing
	// newlines trimmed), so a rotated secret is picked up without a restart.
	// It replaces Password.
	PasswordFile string

	// TLS configures TLS; a rediss:// URL turns it on too.
	TLS TLS

	// PoolSize is the number of connections per node (default: go-redis's
	// 10 per CPU). MinIdleConns keeps that many open while idle (default 0).
	PoolSize     int
	MinIdleConns int
	// Timeouts (defaults DefaultDialTimeout, DefaultReadTimeout,
	// DefaultWriteTimeout; PoolTimeout defaults to ReadTimeout). The context
	// deadline of each Take is honoured as well.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	PoolTimeout  time.Duration
	// MaxRetries is how many times go-redis retries a failed command
	// (default 0; see the package defaults).
	MaxRetries int
	// AutoPipeline batches the script calls of concurrent Takes into shared
	// pipelined writes (go-redis's autopipelining): fewer system calls and
	// wake-ups on both sides, each Take still one EVALSHA and one round trip.
	// It raises throughput under concurrency markedly (see BENCHMARKS.md).
	// Standalone and Sentinel only. go-redis marks the feature experimental.
	AutoPipeline bool
}

// TLS configures the client side of TLS connections to Redis.
type TLS struct {
	// Enabled turns TLS on (implied by a rediss:// URL and by any file set).
	Enabled bool
	// CAFile is a PEM bundle of the CAs that sign the servers' certificates
	// (default: the system roots).
	CAFile string
	// CertFile and KeyFile are the PEM client certificate and key for
	// mutual TLS; both or neither.
	CertFile string
	KeyFile  string
	// ServerName overrides the name checked in the server certificate
	// (default: the host being dialled).
	ServerName string
	// InsecureSkipVerify disables certificate verification. Tests only.
	InsecureSkipVerify bool
}

func (t TLS) on() bool {
	return t.Enabled || t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify
}

// Open builds a Store from cfg and opts. It validates cfg and reads the TLS
// files, but does not contact Redis (a sidecar must start while Redis is
// down; the failover chain serves meanwhile): call Ping or LoadScript to
// check the connection.
func Open(cfg Config, opts Options) (*Store, error) {
	uo, desc, err := cfg.universal()
	if err != nil {
		return nil, fmt.Errorf("redisstore: open: %w", err)
	}
	var client redis.UniversalClient
	var plain *redis.Client
	switch {
	case len(cfg.ClusterAddrs) > 0:
		if cfg.AutoPipeline {
			return nil, errors.New("redisstore: open: auto pipelining is for standalone and Sentinel, not Cluster")
		}
		client = redis.NewClusterClient(uo.Cluster())
	case cfg.MasterName != "":
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
	if cfg.AutoPipeline {
		// The deferred face: Take submits and waits with its own context,
		// which the blocking face does not honour once a call is queued.
		if s.ap, err = plain.AsyncAutoPipeline(); err != nil {
			_ = client.Close()
			return nil, fmt.Errorf("redisstore: open: auto pipeline: %w", err)
		}
		s.addr += " (auto pipeline)"
	}
	return s, nil
}

// universal converts cfg to go-redis options and a credential-free
// description.
func (cfg Config) universal() (*redis.UniversalOptions, string, error) {
	modes := 0
	if cfg.URL != "" {
		modes++
	}
	if cfg.MasterName != "" || len(cfg.SentinelAddrs) > 0 {
		modes++
	}
	if len(cfg.ClusterAddrs) > 0 {
		modes++
	}
	if modes != 1 {
		return nil, "", errors.New("set exactly one of url, sentinel (master_name and addrs) or cluster (addrs)")
	}
	uo := &redis.UniversalOptions{
		Username:        cfg.Username,
		Password:        cfg.Password,
		PoolSize:        cfg.PoolSize,
		MinIdleConns:    cfg.MinIdleConns,
		DialTimeout:     orDefault(cfg.DialTimeout, DefaultDialTimeout),
		ReadTimeout:     orDefault(cfg.ReadTimeout, DefaultReadTimeout),
		WriteTimeout:    orDefault(cfg.WriteTimeout, DefaultWriteTimeout),
		DialerRetries:   1, // one attempt: the chain retries later, not the dialer now
		MaxRetries:      -1,
		DisableIdentity: true, // no CLIENT SETINFO on every new connection

		ContextTimeoutEnabled: true,
	}
	uo.PoolTimeout = orDefault(cfg.PoolTimeout, uo.ReadTimeout)
	if cfg.MaxRetries > 0 {
		uo.MaxRetries = cfg.MaxRetries
	}
	for _, v := range []struct {
		name string
		n    int
	}{{"pool size", cfg.PoolSize}, {"min idle connections", cfg.MinIdleConns}, {"max retries", cfg.MaxRetries}, {"db", cfg.DB}} {
		if v.n < 0 {
			return nil, "", fmt.Errorf("%s %d is negative", v.name, v.n)
		}
	}
	for _, d := range []time.Duration{cfg.DialTimeout, cfg.ReadTimeout, cfg.WriteTimeout, cfg.PoolTimeout} {
		if d < 0 {
			return nil, "", fmt.Errorf("timeout %v is negative", d)
		}
	}

	var desc string
	tlsOn := cfg.TLS.on()
	serverName := cfg.TLS.ServerName
	switch {
	case cfg.URL != "":
		o, err := redis.ParseURL(cfg.URL)
		if err != nil {
			var ue *url.Error
			if errors.As(err, &ue) {
				err = ue.Err // url.Error quotes the whole URL, password included
			}
			return nil, "", fmt.Errorf("url %s: %w", RedactURL(cfg.URL), err)
		}
		if strings.Contains(cfg.URL, "?") {
			return nil, "", fmt.Errorf("url %s: query parameters are not accepted, use the settings", RedactURL(cfg.URL))
		}
		uo.Addrs = []string{o.Addr}
		uo.DB = o.DB
		if uo.Username == "" {
			uo.Username = o.Username
		}
		if uo.Password == "" {
			uo.Password = o.Password
		}
		if o.TLSConfig != nil {
			tlsOn = true
			if serverName == "" {
				serverName = o.TLSConfig.ServerName
			}
		}
		desc = o.Addr + "/" + strconv.Itoa(o.DB)
	case cfg.MasterName != "":
		if len(cfg.SentinelAddrs) == 0 {
			return nil, "", errors.New("sentinel: master name set but no sentinel addresses")
		}
		if err := checkAddrs(cfg.SentinelAddrs); err != nil {
			return nil, "", fmt.Errorf("sentinel: %w", err)
		}
		uo.MasterName = cfg.MasterName
		uo.Addrs = cfg.SentinelAddrs
		uo.DB = cfg.DB
		uo.SentinelUsername = cfg.SentinelUsername
		uo.SentinelPassword = cfg.SentinelPassword
		desc = "sentinel " + cfg.MasterName + "@" + strings.Join(cfg.SentinelAddrs, ",") + "/" + strconv.Itoa(cfg.DB)
	case len(cfg.SentinelAddrs) > 0:
		return nil, "", errors.New("sentinel: addresses set but no master name")
	default:
		if err := checkAddrs(cfg.ClusterAddrs); err != nil {
			return nil, "", fmt.Errorf("cluster: %w", err)
		}
		if cfg.DB != 0 {
			return nil, "", errors.New("cluster: Redis Cluster has only database 0")
		}
		uo.Addrs = cfg.ClusterAddrs
		desc = "cluster " + strings.Join(cfg.ClusterAddrs, ",")
	}
	if cfg.PasswordFile != "" {
		path, user := cfg.PasswordFile, uo.Username
		if _, err := readSecret(path); err != nil {
			return nil, "", err
		}
		uo.Password = ""
		uo.CredentialsProviderContext = func(context.Context) (string, string, error) {
			p, err := readSecret(path)
			return user, p, err
		}
	}
	if tlsOn {
		tc, err := cfg.TLS.config(serverName)
		if err != nil {
			return nil, "", err
		}
		uo.TLSConfig = tc
		desc += " (tls)"
	}
	return uo, desc, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func checkAddrs(addrs []string) error {
	for _, a := range addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("address %q: want host:port: %w", a, err)
		}
	}
	return nil
}

// readSecret reads a password file; the error names the file, never its
// contents.
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("password file: %w", err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// config builds the *tls.Config: TLS 1.2 or later, the CA bundle, the
// client certificate, the server name.
func (t TLS) config(serverName string) (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         serverName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // opt-in, documented as tests only
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls ca file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls ca file %s: no PEM certificate found", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, errors.New("tls: set both cert file and key file, or neither")
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
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
