package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/logging"
)

// Ops holds the operational settings: logging, TLS on the gRPC listener,
// request bounds and gRPC transport tuning. Config inlines it, so its keys
// are top-level:
//
//	log:
//	  level: info                  # debug | info | warn | error (live)
//	  format: text                 # text | json (restart)
//	tls:                           # absent: plaintext gRPC (restart)
//	  cert_file: /etc/extauthz/tls/tls.crt
//	  key_file: /etc/extauthz/tls/tls.key
//	  client_ca_file: /etc/extauthz/tls/ca.crt   # optional: require client certificates (mTLS)
//	  min_version: "1.2"           # 1.2 | 1.3
//	limits:                        # request bounds (live), violations answer InvalidArgument
//	  max_descriptors: 64
//	  max_entries: 32
//	  max_key_length: 256
//	  max_value_length: 4096
//	  max_hits_addend: 1000000000
//	  max_message_bytes: 1048576   # largest gRPC message received (restart)
//	grpc:                          # transport tuning (restart)
//	  max_concurrent_streams: 1024
//	  keepalive_time: 30s
//	  keepalive_timeout: 10s
//	  min_ping_interval: 10s
//	  max_connection_age: 0s       # 0: never
//	  max_connection_age_grace: 0s
//
// Zero values are the documented defaults; Load fills them in. "live" and
// "restart" say whether a reload applies a change or only a restart does
// (see the reload package's RestartRequired).
type Ops struct {
	Log    logging.Settings `yaml:"log"`
	TLS    TLS              `yaml:"tls"`
	Limits Limits           `yaml:"limits"`
	GRPC   GRPC             `yaml:"grpc"`
}

// TLS secures the gRPC listener. The certificate, key and client CA files
// are read again when they change on disk (e.g. a renewed Kubernetes
// Secret), without a restart. Paths are used as written (relative to the
// working directory).
type TLS struct {
	// CertFile and KeyFile are the PEM server certificate (chain) and its
	// private key. Setting them turns TLS on.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile, when set, is a PEM bundle of the CAs that sign client
	// certificates: every client must then present a certificate they
	// verify (mutual TLS).
	ClientCAFile string `yaml:"client_ca_file"`
	// MinVersion is the oldest TLS version accepted: "1.2" (default) or
	// "1.3". Envoy's upstream TLS defaults to at most 1.2: set its
	// tls_maximum_protocol_version to TLSv1_3 before choosing "1.3".
	MinVersion string `yaml:"min_version"`
}

// Enabled reports whether TLS is configured.
func (t *TLS) Enabled() bool { return t.CertFile != "" }

// Version returns MinVersion as a crypto/tls constant (tls.VersionTLS12
// when unset).
func (t *TLS) Version() uint16 {
	if t.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// Limits bound what one request may ask (see descriptor.Bounds, which
// documents each bound and its default) and the size of a gRPC message.
type Limits struct {
	MaxDescriptors int    `yaml:"max_descriptors"`
	MaxEntries     int    `yaml:"max_entries"`
	MaxKeyLength   int    `yaml:"max_key_length"`
	MaxValueLength int    `yaml:"max_value_length"`
	MaxHitsAddend  uint64 `yaml:"max_hits_addend"`
	// MaxMessageBytes is the largest gRPC message the server receives
	// (default 1 MiB: a RateLimitRequest within the other bounds is far
	// smaller; raise it for ext_authz requests carrying large bodies).
	MaxMessageBytes int `yaml:"max_message_bytes"`
}

// Bounds returns the request bounds of l.
func (l *Limits) Bounds() descriptor.Bounds {
	return descriptor.Bounds{
		MaxDescriptors: l.MaxDescriptors,
		MaxEntries:     l.MaxEntries,
		MaxKeyLength:   l.MaxKeyLength,
		MaxValueLength: l.MaxValueLength,
		MaxHitsAddend:  l.MaxHitsAddend,
	}.WithDefaults()
}

// GRPC tunes the gRPC server for Envoy, which keeps a few long-lived HTTP/2
// connections and multiplexes many short calls on them.
type GRPC struct {
	// MaxConcurrentStreams per connection (default 1024); Envoy opens
	// another connection when one is full.
	MaxConcurrentStreams uint32 `yaml:"max_concurrent_streams"`
	// KeepaliveTime is how long a connection may be idle before the server
	// pings it, and KeepaliveTimeout how long it waits for the answer before
	// closing it (defaults 30s and 10s): dead peers are noticed.
	KeepaliveTime    time.Duration `yaml:"keepalive_time"`
	KeepaliveTimeout time.Duration `yaml:"keepalive_timeout"`
	// MinPingInterval is the most often a client may ping (default 10s).
	// Keep it at or below Envoy's connection_keepalive interval, or the
	// server closes Envoy's connections for pinging too often.
	MinPingInterval time.Duration `yaml:"min_ping_interval"`
	// MaxConnectionAge closes connections after this long (with
	// MaxConnectionAgeGrace for their calls to finish) so that clients
	// rebalance across replicas (default 0: never).
	MaxConnectionAge      time.Duration `yaml:"max_connection_age"`
	MaxConnectionAgeGrace time.Duration `yaml:"max_connection_age_grace"`
}

// Choices and defaults of the Ops settings.
var (
	TLSMinVersions = []string{"1.2", "1.3"}
)

const (
	DefaultTLSMinVersion        = "1.2"
	DefaultMaxMessageBytes      = 1 << 20
	DefaultMaxConcurrentStreams = 1024
	DefaultKeepaliveTime        = 30 * time.Second
	DefaultKeepaliveTimeout     = 10 * time.Second
	DefaultMinPingInterval      = 10 * time.Second

	// minMessageBytes and maxMessageBytes bound max_message_bytes: below
	// 4 KiB ordinary requests fail, and gRPC counts sizes in an int32.
	minMessageBytes = 4 << 10
	maxMessageBytes = 1 << 30
	// maxPEMFile bounds the TLS files read at load.
	maxPEMFile = 1 << 20
)

// validate fills in the defaults of o and reports every problem.
func (o *Ops) validate(c *checker) {
	choice := func(path string, v *string, def string, choices []string) {
		switch {
		case *v == "":
			*v = def
		case !slices.Contains(choices, *v):
			c.errorf(path, "unknown value %q: choices are %s", *v, strings.Join(choices, ", "))
		}
	}
	c.report("log", o.Log.Validate())
	o.Log = o.Log.WithDefaults()
	o.TLS.validate(c, choice)
	o.Limits.validate(c)
	o.GRPC.validate(c)
}

func (t *TLS) validate(c *checker, choice func(path string, v *string, def string, choices []string)) {
	if *t == (TLS{}) {
		return
	}
	choice("tls.min_version", &t.MinVersion, DefaultTLSMinVersion, TLSMinVersions)
	switch {
	case t.CertFile == "" && t.KeyFile == "":
		c.errorf("tls", "cert_file and key_file are required to serve TLS; remove the tls section for plaintext")
		return
	case t.CertFile == "":
		c.errorf("tls.cert_file", "missing: key_file needs its certificate, cert_file")
		return
	case t.KeyFile == "":
		c.errorf("tls.key_file", "missing: cert_file needs its private key, key_file")
		return
	}
	certPEM, certErr := readPEMFile(t.CertFile)
	if certErr != nil {
		c.errorf("tls.cert_file", "%v", certErr)
	}
	keyPEM, keyErr := readPEMFile(t.KeyFile)
	if keyErr != nil {
		c.errorf("tls.key_file", "%v", keyErr)
	}
	if certErr == nil && keyErr == nil {
		if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
			c.errorf("tls", "cert_file %s and key_file %s are not a certificate and its key: %v", t.CertFile, t.KeyFile, err)
		}
	}
	if t.ClientCAFile != "" {
		caPEM, err := readPEMFile(t.ClientCAFile)
		if err == nil {
			err = checkCAs(caPEM)
		}
		if err != nil {
			c.errorf("tls.client_ca_file", "%v", err)
		}
	}
}

// readPEMFile reads a regular file of at most maxPEMFile bytes.
func readPEMFile(path string) ([]byte, error) {
	info, err := os.Stat(path) // follows symlinks, as in Kubernetes Secret volumes
	if err != nil {
		return nil, err
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxPEMFile {
		return nil, fmt.Errorf("%s is larger than %d KiB: expected PEM certificates", path, maxPEMFile>>10)
	}
	return data, nil
}

// checkCAs checks that data holds at least one PEM certificate and nothing
// else that fails to parse.
func checkCAs(data []byte) error {
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		if _, err := x509.ParseCertificate(b.Bytes); err != nil {
			return fmt.Errorf("certificate %d: %w", n+1, err)
		}
		n++
	}
	if n == 0 {
		return fmt.Errorf("no PEM certificate found: expected the CA certificates that sign client certificates")
	}
	return nil
}

func (l *Limits) validate(c *checker) {
	for _, f := range []struct {
		name string
		v    *int
		def  int
	}{
		{"max_descriptors", &l.MaxDescriptors, descriptor.DefaultMaxDescriptors},
		{"max_entries", &l.MaxEntries, descriptor.DefaultMaxEntries},
		{"max_key_length", &l.MaxKeyLength, descriptor.DefaultMaxKeyLength},
		{"max_value_length", &l.MaxValueLength, descriptor.DefaultMaxValueLength},
	} {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0:
			c.errorf("limits."+f.name, "%d is negative: expected 1 or more (default %d)", *f.v, f.def)
		}
	}
	switch {
	case l.MaxHitsAddend == 0:
		l.MaxHitsAddend = descriptor.DefaultMaxHitsAddend
	case l.MaxHitsAddend > math.MaxInt64:
		c.errorf("limits.max_hits_addend", "%d is too large: expected at most %d", l.MaxHitsAddend, int64(math.MaxInt64))
	}
	switch m := l.MaxMessageBytes; {
	case m == 0:
		l.MaxMessageBytes = DefaultMaxMessageBytes
	case m < minMessageBytes || m > maxMessageBytes:
		c.errorf("limits.max_message_bytes", "%d is out of range: expected %d (4 KiB) to %d (1 GiB), default %d", m, minMessageBytes, maxMessageBytes, DefaultMaxMessageBytes)
	}
}

func (g *GRPC) validate(c *checker) {
	setDefault(&g.MaxConcurrentStreams, DefaultMaxConcurrentStreams)
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"keepalive_time", &g.KeepaliveTime, DefaultKeepaliveTime},
		{"keepalive_timeout", &g.KeepaliveTimeout, DefaultKeepaliveTimeout},
		{"min_ping_interval", &g.MinPingInterval, DefaultMinPingInterval},
		{"max_connection_age", &g.MaxConnectionAge, 0},
		{"max_connection_age_grace", &g.MaxConnectionAgeGrace, 0},
	} {
		switch {
		case *d.v < 0:
			c.errorf("grpc."+d.name, "%v is negative: expected a duration such as 30s (0: default)", *d.v)
		case *d.v == 0:
			*d.v = d.def
		}
	}
	if g.MaxConnectionAgeGrace > 0 && g.MaxConnectionAge == 0 {
		c.errorf("grpc.max_connection_age_grace", "applies only with max_connection_age: set both, or neither")
	}
}
