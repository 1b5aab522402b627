package config

import (
	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/logging"
	"github.com/extauthz/extauthz/pkg/server"
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
//	  max_value_length: 4096      # longer values are counted under their hash, not refused
//	  max_hits_addend: 1000000000
//	  max_message_bytes: 1048576   # largest gRPC message received (restart)
//	grpc:                          # transport tuning (restart)
//	  max_concurrent_streams: 1024
//	  keepalive_time: 30s
//	  keepalive_timeout: 10s
//	  min_ping_interval: 10s
//	  max_connection_age: 0s       # 0: never
//	  max_connection_age_grace: 0s
//	metrics:                       # a listener serving only metrics (restart)
//	  addr: ""                     # e.g. ":9090"; "": none (metrics stay at http_addr/metrics)
//	  path: /metrics
//
// Zero values are the documented defaults; Load fills them in. "live" and
// "restart" say whether a reload applies a change or only a restart does
// (see the reload package's RestartRequired).
type Ops struct {
	// Log is owned by the logging package, TLS by certs, GRPC by server.
	Log    logging.Settings    `yaml:"log"`
	TLS    certs.Settings      `yaml:"tls"`
	Limits Limits              `yaml:"limits"`
	GRPC   server.GRPCSettings `yaml:"grpc"`
	// Metrics is an optional listener serving only metrics (server).
	Metrics server.MetricsSettings `yaml:"metrics"`
}

// Limits bound what one request may ask (descriptor.Bounds owns those
// settings, their defaults and checks) and the size of a gRPC message.
type Limits struct {
	// Bounds holds max_descriptors, max_entries, max_key_length,
	// max_value_length and max_hits_addend.
	Bounds descriptor.Bounds `yaml:",inline"`
	// MaxMessageBytes is the largest gRPC message the server receives,
	// and the largest POST /json body (default 1 MiB: a RateLimitRequest
	// within the other bounds is far smaller; raise it for ext_authz
	// requests carrying large bodies).
	MaxMessageBytes int `yaml:"max_message_bytes"`
}

// Bounds of limits.max_message_bytes: below 4 KiB ordinary requests fail,
// and gRPC counts sizes in an int32.
const (
	minMessageBytes = 4 << 10
	maxMessageBytes = 1 << 30
)

// validate fills in the defaults of o and reports every problem.
func (o *Ops) validate(c *checker) {
	c.report("log", o.Log.Validate())
	o.Log = o.Log.WithDefaults()
	o.TLS = o.TLS.WithDefaults()
	c.report("tls", o.TLS.Validate())
	o.Limits.validate(c)
	o.GRPC = o.GRPC.WithDefaults()
	c.report("grpc", o.GRPC.Validate())
	o.Metrics = o.Metrics.WithDefaults()
	c.report("metrics", o.Metrics.Validate())
}

func (l *Limits) validate(c *checker) {
	c.report("limits", l.Bounds.Validate())
	l.Bounds = l.Bounds.WithDefaults()
	switch m := l.MaxMessageBytes; {
	case m == 0:
		l.MaxMessageBytes = server.DefaultMaxRecvMsgSize
	case m < minMessageBytes || m > maxMessageBytes:
		c.errorf("limits.max_message_bytes", "%d is out of range: expected %d (4 KiB) to %d (1 GiB), default %d", m, minMessageBytes, maxMessageBytes, server.DefaultMaxRecvMsgSize)
	}
}
