// Package adminauth guards the admin listener: TLS, and a bearer token or
// client certificates required for its private paths (the dashboard,
// /api/*, /config) and its decision API (/json) and, when configured, for
// /metrics and the probes.
package adminauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/field"
)

// Settings secures the admin listener (the server file's admin section).
// The zero value is the documented default: plain HTTP, every path open.
//
//	admin:
//	  tls:                                          # absent: plain HTTP (certs.Settings, as the top-level tls)
//	    cert_file: /etc/extauthz/admin/tls.crt
//	    key_file: /etc/extauthz/admin/tls.key
//	    client_ca_file: /etc/extauthz/admin/ca.crt  # optional: client certificates are a credential
//	    min_version: "1.2"                          # 1.2 | 1.3
//	  auth:
//	    token_file: /etc/extauthz/admin/token       # optional: the bearer token is a credential
//	  protect_metrics: false                        # true: /metrics needs a credential too
//	  protect_health: false                         # true: /healthz and /readyz too
//
// With a credential configured (tls.client_ca_file, auth.token_file or
// both), the dashboard (/), /api/*, /config and /json require one: a client
// certificate that verifies against tls.client_ca_file, or the token of
// auth.token_file, sent as "Authorization: Bearer TOKEN" (scripts,
// extauthz top) or as the password of HTTP Basic authentication with any
// user name (browsers ask for it). Either is enough when both are set.
// Unlike the gRPC listener's, the admin client_ca_file lets clients without
// a certificate connect, so that probes and Prometheus still reach the
// paths left open.
type Settings struct {
	TLS  certs.Settings `yaml:"tls"`
	Auth Auth           `yaml:"auth"`
	// ProtectMetrics and ProtectHealth extend the credential check to
	// /metrics and to /healthz, /readyz and /healthcheck (default false: Prometheus and
	// the kubelet's probes usually carry no credential).
	ProtectMetrics bool `yaml:"protect_metrics"`
	ProtectHealth  bool `yaml:"protect_health"`
}

// Auth names the bearer token the admin listener accepts.
type Auth struct {
	// TokenFile holds the bearer token (surrounding white space ignored;
	// at least MinTokenLength characters). It is read again when it
	// changes, so a rotated Secret takes effect without a restart.
	TokenFile string `yaml:"token_file"`
}

// MinTokenLength is the shortest admin token accepted.
const MinTokenLength = 16

// maxTokenFile bounds the token file read.
const maxTokenFile = 4 << 10

// Protected reports whether a credential is required for the private paths.
func (s *Settings) Protected() bool { return s.Auth.TokenFile != "" || s.TLS.ClientCAFile != "" }

// Validate reports every problem with s, reading the files it names; paths
// are relative to the admin section.
func (s *Settings) Validate() error {
	errs := []error{field.Wrap("tls", s.TLS.Validate())}
	if f := s.Auth.TokenFile; f != "" {
		if _, err := readToken(f); err != nil {
			errs = append(errs, field.Errorf("auth.token_file", "%w", err))
		}
	}
	if !s.Protected() {
		if s.ProtectMetrics {
			errs = append(errs, field.Errorf("protect_metrics", "needs a credential to check: set auth.token_file or tls.client_ca_file"))
		}
		if s.ProtectHealth {
			errs = append(errs, field.Errorf("protect_health", "needs a credential to check: set auth.token_file or tls.client_ca_file"))
		}
	}
	return errors.Join(errs...)
}

// Access enforces Settings: the listener's TLS configuration and
// the credential check of each request. Build it with NewAccess; it is
// safe for concurrent use and starts no goroutine.
type Access struct {
	s     Settings
	certs *certs.Reloader // nil: plain HTTP
	token *tokenFile      // nil: no token accepted
}

// NewAccess loads the files of s. onError, optional, is called when a
// changed certificate fails to load (the previous one keeps serving).
func New(s Settings, onError func(error)) (*Access, error) {
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("adminauth: %w", field.Wrap("admin", err))
	}
	a := &Access{s: s}
	if s.TLS.Enabled() {
		r, err := certs.New(certs.Options{
			CertFile: s.TLS.CertFile, KeyFile: s.TLS.KeyFile, ClientCAFile: s.TLS.ClientCAFile,
			OptionalClientCert: true, MinVersion: s.TLS.Version(), NextProtos: []string{"h2", "http/1.1"}, OnError: onError,
		})
		if err != nil {
			return nil, fmt.Errorf("adminauth: %w", err)
		}
		a.certs = r
	}
	if s.Auth.TokenFile != "" {
		t, err := newTokenFile(s.Auth.TokenFile)
		if err != nil {
			return nil, fmt.Errorf("adminauth: %w", err)
		}
		a.token = t
	}
	return a, nil
}

// TLSConfig returns the listener's TLS configuration, nil for plain HTTP.
func (a *Access) TLSConfig() *tls.Config {
	if a == nil || a.certs == nil {
		return nil
	}
	return a.certs.TLSConfig()
}

// Class says which setting guards an admin path.
type Class int

const (
	// Private paths (the dashboard, /api/*, /config) are guarded whenever
	// auth is set.
	Private Class = iota
	// Metrics (/metrics) is guarded with protect_metrics.
	Metrics
	// Health (/healthz, /readyz, /healthcheck) is guarded with
	// protect_health.
	Health
	// Decision (POST /json, the RateLimitService over HTTP) is guarded,
	// like Private, whenever auth is set: it counts hits, so an open one
	// would let anyone who reaches the listener spend other clients'
	// quotas, and would go around the client certificates the gRPC
	// listener may require.
	Decision
)

// Guard returns h, wrapped in the credential check when paths of class c
// need one. A nil *Access guards nothing.
func (a *Access) Guard(c Class, h http.Handler) http.Handler {
	if a == nil || !a.s.Protected() ||
		c == Metrics && !a.s.ProtectMetrics || c == Health && !a.s.ProtectHealth {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.allowed(r) {
			h.ServeHTTP(w, r)
			return
		}
		a.refuse(w)
	})
}

// allowed reports whether r carries a verified client certificate or the
// token.
func (a *Access) allowed(r *http.Request) bool {
	if a.s.TLS.ClientCAFile != "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		return true
	}
	if a.token == nil {
		return false
	}
	given, ok := credential(r.Header.Get("Authorization"))
	return ok && a.token.match(given)
}

// refuse answers 401 with the challenges of the credentials accepted. The
// Basic challenge makes browsers ask for the token.
func (a *Access) refuse(w http.ResponseWriter) {
	msg := "unauthorized: present a client certificate signed by admin.tls.client_ca_file\n"
	if a.token != nil {
		w.Header().Add("WWW-Authenticate", `Bearer realm="extauthz admin"`)
		w.Header().Add("WWW-Authenticate", `Basic realm="extauthz admin", charset="UTF-8"`)
		msg = "unauthorized: send \"Authorization: Bearer TOKEN\" with the token of admin.auth.token_file\n"
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = io.WriteString(w, msg)
}

// credential extracts the token of an Authorization header: a Bearer token,
// or the password of Basic credentials.
func credential(h string) (string, bool) {
	scheme, rest, ok := strings.Cut(h, " ")
	if !ok {
		return "", false
	}
	rest = strings.TrimSpace(rest)
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		return rest, rest != ""
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", false
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		return pass, ok && pass != ""
	}
	return "", false
}

// tokenFile is the admin token, read again at most once a second when the
// file changed. Only its SHA-256 is kept, so comparisons take the same
// time whatever the token's length and contents.
type tokenFile struct {
	path string

	mu      sync.Mutex
	sum     [sha256.Size]byte
	info    os.FileInfo
	checked time.Time
}

func newTokenFile(path string) (*tokenFile, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	tok, err := readToken(path)
	if err != nil {
		return nil, err
	}
	return &tokenFile{path: path, sum: sha256.Sum256([]byte(tok)), info: info, checked: time.Now()}, nil
}

// match reports whether given is the current token, in constant time.
func (t *tokenFile) match(given string) bool {
	g := sha256.Sum256([]byte(given))
	sum := t.current()
	return subtle.ConstantTimeCompare(g[:], sum[:]) == 1
}

// current returns the token's hash, reloading a changed file; a file that
// no longer reads keeps the previous token.
func (t *tokenFile) current() [sha256.Size]byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if now.Sub(t.checked) < time.Second {
		return t.sum
	}
	t.checked = now
	info, err := os.Stat(t.path)
	if err != nil || os.SameFile(info, t.info) && info.Size() == t.info.Size() && info.ModTime().Equal(t.info.ModTime()) {
		return t.sum
	}
	if tok, err := readToken(t.path); err == nil {
		t.sum, t.info = sha256.Sum256([]byte(tok)), info
	}
	return t.sum
}

// readToken reads a token file. Errors never quote the contents.
func readToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("%s is larger than %d KiB: expected one token", path, maxTokenFile>>10)
	}
	tok := strings.TrimSpace(string(data))
	switch {
	case len(tok) < MinTokenLength:
		return "", fmt.Errorf("%s holds a token of %d characters: expected at least %d (e.g. openssl rand -hex 32)", path, len(tok), MinTokenLength)
	case strings.ContainsAny(tok, " \t\r\n"):
		return "", fmt.Errorf("%s holds white space inside the token: expected one token on one line", path)
	}
	return tok, nil
}
