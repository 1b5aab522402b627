package xdsrules

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
	"unicode"

	"golang.org/x/net/http/httpguts"

	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/secret"
)

// Settings is the server file's rules_xds section. Zero values are the
// documented defaults (WithDefaults fills them in); Address is required.
//
//	rules_xds:
//	  address: xds.example:18000        # required: the management server, HOST:PORT
//	  node_id: default                  # the node the server keys its snapshots on
//	  node_cluster: ""                  # optional Node.cluster
//	  node_metadata: {zone: eu-1}       # optional Node.metadata (strings)
//	  headers: {authorization: ...}     # optional gRPC metadata on the stream (secret)
//	  tls: {enabled: false, ca_file: "", cert_file: "", key_file: "", server_name: ""}
//	  initial_backoff: 1s               # first reconnect delay, doubled up to max_backoff
//	  max_backoff: 30s
//	  max_message_bytes: 16777216       # largest DiscoveryResponse accepted
//	  ready_without_rules: false        # /readyz waits for the first update
type Settings struct {
	// Address is the management server's HOST:PORT (a DNS name or an IP).
	Address string `yaml:"address"`
	// NodeID identifies this server to the management server, which
	// usually keys its snapshots on it (default "default", as in
	// envoyproxy/ratelimit).
	NodeID string `yaml:"node_id"`
	// NodeCluster is the Node's cluster (default empty); some management
	// servers key their snapshots on it instead of the id.
	NodeCluster string `yaml:"node_cluster"`
	// NodeMetadata is the Node's metadata, string values.
	NodeMetadata map[string]string `yaml:"node_metadata"`
	// Headers are sent as gRPC metadata on the stream (e.g. an
	// authorization token); their values are secrets.
	Headers map[string]secret.String `yaml:"headers"`
	// TLS secures the connection (default plaintext).
	TLS certs.ClientSettings `yaml:"tls"`
	// InitialBackoff is the delay before the first reconnection after the
	// stream failed; each failure in a row doubles it up to MaxBackoff,
	// each delay randomised by ±20% (defaults 1s and 30s). A stream that
	// delivered an update resets it.
	InitialBackoff time.Duration `yaml:"initial_backoff"`
	MaxBackoff     time.Duration `yaml:"max_backoff"`
	// MaxMessageBytes bounds one DiscoveryResponse (default 16 MiB, the
	// largest rule file; at most 256 MiB).
	MaxMessageBytes int `yaml:"max_message_bytes"`
	// ReadyWithoutRules makes the server ready (/readyz) before the first
	// update has been applied; by default it is not, since until then no
	// request is limited (envoyproxy/ratelimit's
	// FORCE_START_WITHOUT_INITIAL_CONFIG).
	ReadyWithoutRules bool `yaml:"ready_without_rules"`
}

// Defaults of Settings.
const (
	DefaultNodeID          = "default"
	DefaultInitialBackoff  = time.Second
	DefaultMaxBackoff      = 30 * time.Second
	DefaultMaxMessageBytes = 16 << 20
	maxMessageBytes        = 256 << 20
)

// WithDefaults returns s with its defaults filled in.
func (s Settings) WithDefaults() Settings {
	if s.NodeID == "" {
		s.NodeID = DefaultNodeID
	}
	if s.InitialBackoff == 0 {
		s.InitialBackoff = DefaultInitialBackoff
	}
	if s.MaxBackoff == 0 {
		s.MaxBackoff = max(DefaultMaxBackoff, s.InitialBackoff)
	}
	if s.MaxMessageBytes == 0 {
		s.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return s
}

// Validate checks s (defaults filled in or not). Errors are *field.Error
// values with paths such as "address" or "headers.x-token".
func (s *Settings) Validate() error {
	var errs []error
	if s.Address == "" {
		errs = append(errs, field.Errorf("address", "missing: the xDS management server's HOST:PORT, e.g. xds.example:18000"))
	} else if err := checkAddress(s.Address); err != nil {
		errs = append(errs, field.Errorf("address", "%q %v: expected HOST:PORT, e.g. xds.example:18000", s.Address, err))
	}
	for _, f := range []struct{ path, v string }{{"node_id", s.NodeID}, {"node_cluster", s.NodeCluster}} {
		if strings.ContainsFunc(f.v, unicode.IsControl) {
			errs = append(errs, field.Errorf(f.path, "%q contains control characters: use printable text", f.v))
		}
	}
	for k := range s.NodeMetadata {
		if k == "" {
			errs = append(errs, field.Errorf("node_metadata", "an empty key: name each metadata entry"))
		}
	}
	for k, v := range s.Headers {
		if err := checkHeader(k, string(v)); err != nil {
			errs = append(errs, field.Errorf(field.Join("headers", k), "%v", err))
		}
	}
	errs = append(errs, field.Wrap("tls", s.TLS.Validate()))
	errs = append(errs, s.validateNumbers()...)
	return errors.Join(errs...)
}

func (s *Settings) validateNumbers() []error {
	var errs []error
	for _, d := range []struct {
		path string
		v    time.Duration
	}{{"initial_backoff", s.InitialBackoff}, {"max_backoff", s.MaxBackoff}} {
		if d.v < 0 {
			errs = append(errs, field.Errorf(d.path, "%v is negative: expected a duration such as 1s (0: the default)", d.v))
		}
	}
	if s.InitialBackoff > 0 && s.MaxBackoff > 0 && s.MaxBackoff < s.InitialBackoff {
		errs = append(errs, field.Errorf("max_backoff", "%v is below initial_backoff %v: raise max_backoff or lower initial_backoff", s.MaxBackoff, s.InitialBackoff))
	}
	if n := s.MaxMessageBytes; n < 0 || n > maxMessageBytes {
		errs = append(errs, field.Errorf("max_message_bytes", "%d is out of range: expected 1 to %d (0: the default, %d)", n, maxMessageBytes, DefaultMaxMessageBytes))
	}
	return errs
}

// checkAddress checks a HOST:PORT to dial.
func checkAddress(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("is not an address")
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("has no valid port (%q)", port)
	}
	if host == "" || strings.ContainsFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '/' }) {
		return errors.New("has no valid host")
	}
	return nil
}

// checkHeader checks one gRPC metadata entry: a lower-case header name
// that gRPC does not reserve, and a printable value.
func checkHeader(k, v string) error {
	switch {
	case !httpguts.ValidHeaderFieldName(k):
		return fmt.Errorf("%q is not a valid header name: use letters, digits and -", k)
	case strings.ToLower(k) != k:
		return fmt.Errorf("%q: gRPC metadata names are lower case; write %q", k, strings.ToLower(k))
	case strings.HasPrefix(k, "grpc-") || k == "te" || k == "content-type" || k == "user-agent":
		return fmt.Errorf("%q is set by gRPC itself: choose another name", k)
	case strings.HasSuffix(k, "-bin"):
		return fmt.Errorf("%q: binary (-bin) metadata is not supported; use a text header", k)
	case !httpguts.ValidHeaderFieldValue(v):
		return errors.New("the value holds characters a header cannot carry (newline, control characters): use printable text")
	}
	return nil
}
