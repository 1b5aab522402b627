package tracing

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/net/http/httpguts"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/secret"
)

// Settings are the server file's tracing section. Zero values are the
// documented defaults: tracing off.
//
//	tracing:
//	  enabled: true
//	  protocol: grpc                      # grpc | http (default http, as OTLP)
//	  endpoint: otel-collector:4317       # default: the OTEL_EXPORTER_OTLP_* variables, else localhost
//	  insecure: true                      # plaintext to a host:port endpoint
//	  headers: {authorization: "Bearer ..."}
//	  sampling_ratio: 0.1                 # of traces Envoy did not sample already (default 1)
//	  service_name: extauthz              # default OTEL_SERVICE_NAME, else extauthz
//	  service_namespace: edge
//	  service_instance_id: pod-1          # default a random UUID
type Settings struct {
	// Enabled exports a span for every RateLimitService and ext_authz
	// call (default false: nothing is installed and tracing costs
	// nothing).
	Enabled bool `yaml:"enabled"`
	// Protocol is the OTLP transport: "grpc" or "http" (OTLP/HTTP with
	// protobuf). Unset: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or
	// OTEL_EXPORTER_OTLP_PROTOCOL, else http, the OTLP default.
	Protocol Protocol `yaml:"protocol"`
	// Endpoint is the collector: host:port, or a URL (http://, https://;
	// for protocol http the URL's path is used as is, default /v1/traces).
	// Unset: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or
	// OTEL_EXPORTER_OTLP_ENDPOINT, else localhost:4317 (grpc) or
	// localhost:4318 (http).
	Endpoint string `yaml:"endpoint"`
	// Insecure sends spans in plaintext (default false: TLS), for a
	// host:port endpoint; an http:// URL is plaintext anyway.
	Insecure bool `yaml:"insecure"`
	// Headers are sent with every export, e.g. an authorization token
	// (secrets: /config shows them redacted).
	Headers map[string]secret.String `yaml:"headers"`
	// SamplingRatio is the fraction of new traces recorded, from 0 to 1
	// (default 1: all). A call whose caller (Envoy) sent a trace context
	// in the gRPC metadata follows the caller's sampling decision instead;
	// the trace context of a Check's HTTP request is the client's, and
	// only linked.
	SamplingRatio *float64 `yaml:"sampling_ratio"`
	// ServiceName, ServiceNamespace and ServiceInstanceID are the
	// resource's service.name, service.namespace and service.instance.id.
	// Unset, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES decide, else
	// service.name is "extauthz" and service.instance.id a random UUID
	// per process. Other resource attributes come from
	// OTEL_RESOURCE_ATTRIBUTES.
	ServiceName       string `yaml:"service_name"`
	ServiceNamespace  string `yaml:"service_namespace"`
	ServiceInstanceID string `yaml:"service_instance_id"`
}

// Defaults of Settings.
const (
	DefaultServiceName   = "extauthz"
	DefaultSamplingRatio = 1.0
)

// Protocol is an OTLP transport. Its zero value means unset (see
// Settings.Protocol).
type Protocol uint8

// Protocols.
const (
	ProtocolUnset Protocol = iota
	ProtocolGRPC
	ProtocolHTTP
)

// protocolNames are the names of the protocols, by value.
var protocolNames = [...]string{"", "grpc", "http"}

// String returns the protocol's config name ("" when unset).
func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// MarshalText returns the protocol's config name.
func (p Protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads "grpc" or "http" ("http/protobuf" too, the OTel
// variables' name for it).
func (p *Protocol) UnmarshalText(text []byte) error {
	v, err := parseProtocol(string(text))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

func parseProtocol(s string) (Protocol, error) {
	switch s {
	case "grpc":
		return ProtocolGRPC, nil
	case "http", "http/protobuf":
		return ProtocolHTTP, nil
	}
	return ProtocolUnset, fmt.Errorf("unknown protocol %q: expected grpc or http (OTLP/HTTP with protobuf)", s)
}

// Validate reports every problem of s as *field.Error values with paths
// such as "sampling_ratio". Settings that are not enabled are checked too,
// so that turning tracing on never reveals an old mistake.
func (s *Settings) Validate() error {
	var errs []error
	if s.Protocol > ProtocolHTTP {
		errs = append(errs, field.Errorf("protocol", "unknown protocol %d: expected grpc or http", s.Protocol))
	}
	if err := s.validateEndpoint(); err != nil {
		errs = append(errs, field.Errorf("endpoint", "%w", err))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Headers)) {
		if !httpguts.ValidHeaderFieldName(k) {
			errs = append(errs, field.Errorf("headers", "%q is not a valid header name: use letters, digits and - (e.g. authorization)", k))
		} else if !httpguts.ValidHeaderFieldValue(string(s.Headers[k])) {
			errs = append(errs, field.Errorf(field.Join("headers", k), "the value holds a control character: remove line breaks and other control characters"))
		}
	}
	if r := s.SamplingRatio; r != nil && (math.IsNaN(*r) || *r < 0 || *r > 1) {
		errs = append(errs, field.Errorf("sampling_ratio", "%v is out of range: expected a fraction from 0 (only what Envoy sampled) to 1 (every call)", *r))
	}
	for _, f := range []struct{ name, v string }{
		{"service_name", s.ServiceName}, {"service_namespace", s.ServiceNamespace}, {"service_instance_id", s.ServiceInstanceID},
	} {
		if err := checkName(f.v); err != nil {
			errs = append(errs, field.Errorf(f.name, "%w", err))
		}
	}
	return errors.Join(errs...)
}

// maxNameBytes bounds the service names: resource attributes go with every
// export.
const maxNameBytes = 255

func checkName(v string) error {
	if len(v) > maxNameBytes {
		return fmt.Errorf("%d bytes is too long: expected at most %d", len(v), maxNameBytes)
	}
	if i := strings.IndexFunc(v, func(r rune) bool { return !unicode.IsPrint(r) || r == unicode.ReplacementChar }); i >= 0 {
		return fmt.Errorf("%q holds a control character or invalid UTF-8 at byte %d: use printable text", v, i)
	}
	return nil
}

// validateEndpoint checks Endpoint: host:port or an http(s) URL without
// credentials, and no plaintext request for an https URL.
func (s *Settings) validateEndpoint() error {
	e := s.Endpoint
	if e == "" {
		return nil
	}
	if !strings.Contains(e, "://") {
		host, port, err := net.SplitHostPort(e)
		if err != nil || host == "" || strings.ContainsAny(host, " /?#@") {
			return fmt.Errorf("%q is not an endpoint: expected HOST:PORT (e.g. otel-collector:4317) or a URL (e.g. http://otel-collector:4318)", e)
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("%q: port %q is not a number from 1 to 65535", e, port)
		}
		return nil
	}
	u, err := url.Parse(e)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL: expected e.g. http://otel-collector:4318", e)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("%q: scheme %q is not supported: expected http:// or https://", e, u.Scheme)
	case u.Host == "" || u.Hostname() == "":
		return fmt.Errorf("%q has no host: expected e.g. http://otel-collector:4318", e)
	case u.User != nil:
		return fmt.Errorf("%q holds credentials: put them in headers (e.g. authorization), which /config redacts", e)
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q has a query or fragment: expected scheme, host, port and path only", e)
	case s.Insecure && u.Scheme == "https":
		return fmt.Errorf("%q is https but insecure is true: use an http:// URL for plaintext, or set insecure: false", e)
	case s.Protocol == ProtocolGRPC && u.Path != "" && u.Path != "/":
		return fmt.Errorf("%q has a path, which OTLP/gRPC does not use: give scheme, host and port only", e)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.ParseUint(p, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("%q: port %q is not a number from 1 to 65535", e, p)
		}
	}
	return nil
}

// samplingRatio returns SamplingRatio, or its default.
func (s *Settings) samplingRatio() float64 {
	if s.SamplingRatio == nil {
		return DefaultSamplingRatio
	}
	return *s.SamplingRatio
}

// protocol returns Protocol, or the one the OTel variables name (read with
// getenv), else http. An unknown protocol in the variables is an error
// that names it.
func (s *Settings) protocol(getenv func(string) string) (Protocol, error) {
	if s.Protocol != ProtocolUnset {
		return s.Protocol, nil
	}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"} {
		if v := getenv(name); v != "" {
			p, err := parseProtocol(v)
			if err != nil {
				return p, fmt.Errorf("%s: %w (http/json is not supported; or set tracing.protocol)", name, err)
			}
			return p, nil
		}
	}
	return ProtocolHTTP, nil
}
