package ratelimit

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// KeyFunc reads one descriptor entry's value from a request; ok false means
// the request has none, and the descriptor holding the entry is not sent
// (as Envoy skips a rate_limits entry whose action produced nothing).
// KeyFuncs run on every request, concurrently.
type KeyFunc func(r *http.Request) (value string, ok bool)

// Key names one descriptor entry and the function that reads its value.
type Key struct {
	Name  string
	Value KeyFunc
}

// By returns the Key named name read by f.
func By(name string, f KeyFunc) Key { return Key{Name: name, Value: f} }

// GenericKey is the entry key Named uses, as Envoy's generic_key action.
const GenericKey = "generic_key"

// Named returns a descriptor led by the entry generic_key=name, then keys:
// the way a per-handler limit names its rule in the rule file
// ("key: generic_key, value: login", with the keys' entries nested below).
func Named(name string, keys ...Key) []Key {
	return append([]Key{{Name: GenericKey, Value: Const(name)}}, keys...)
}

// Const returns v for every request.
func Const(v string) KeyFunc {
	return func(*http.Request) (string, bool) { return v, true }
}

// Header returns the first value of the request header name, when not
// empty. Clients can send any header: use it for limits on values that a
// trusted proxy sets, or where a client choosing its value is harmless.
func Header(name string) KeyFunc {
	name = http.CanonicalHeaderKey(name)
	return func(r *http.Request) (string, bool) {
		v := r.Header.Get(name)
		return v, v != ""
	}
}

// Query returns the first value of the URL query parameter name, when not
// empty.
func Query(name string) KeyFunc {
	return func(r *http.Request) (string, bool) {
		v := r.URL.Query().Get(name)
		return v, v != ""
	}
}

// Method returns the request method.
func Method() KeyFunc {
	return func(r *http.Request) (string, bool) { return r.Method, true }
}

// Path returns the URL path. Prefer Route: paths carry IDs, one counter each.
func Path() KeyFunc {
	return func(r *http.Request) (string, bool) { return r.URL.Path, r.URL.Path != "" }
}

// Route returns the http.ServeMux pattern that matched the request
// (http.Request.Pattern, e.g. "POST /login"). The pattern is set only
// inside the mux: use Route in per-handler limits (Middleware.Limit), not
// in a middleware wrapped around the mux.
func Route() KeyFunc {
	return func(r *http.Request) (string, bool) { return r.Pattern, r.Pattern != "" }
}

// APIKey returns the API key in the request header name; for
// Authorization, the token after "Bearer ". Use it under the config's API
// key descriptor key (authz.api_key.descriptor_key, default "api_key"):
// the limiter, in process or remote, replaces the key on arrival by the
// listed key's id (matched by its SHA-256 digest) or by a sha256: hash, so
// the key itself never reaches a counter, a metric label or a log. A
// client that sends a listed key's hash or id as its key is an unlisted
// key. Remote limiters receive the key as Envoy sends it: use TLS.
func APIKey(header string) KeyFunc {
	header = http.CanonicalHeaderKey(header)
	return func(r *http.Request) (string, bool) {
		v := r.Header.Get(header)
		if header == "Authorization" {
			if len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
				v = v[7:]
			} else {
				v = ""
			}
		}
		if v == "" {
			return "", false
		}
		return v, true
	}
}

// Tenant returns the request's tenant: the value of header when set (a
// header your authenticating proxy sets; clients can send any), else the
// left-most label of a host name of three labels or more
// ("acme.api.example.com" gives "acme"). header "" reads the host only.
func Tenant(header string) KeyFunc {
	header = http.CanonicalHeaderKey(header)
	return func(r *http.Request) (string, bool) {
		if header != "" {
			if v := r.Header.Get(header); v != "" {
				return v, true
			}
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if _, err := netip.ParseAddr(host); err == nil {
			return "", false
		}
		label, rest, ok := strings.Cut(host, ".")
		if !ok || label == "" || !strings.Contains(rest, ".") {
			return "", false
		}
		return label, true
	}
}

// User returns the authenticated user that f finds in the request's
// context, as set by your authentication middleware (which must run first).
func User(f func(ctx context.Context) (user string, ok bool)) KeyFunc {
	return func(r *http.Request) (string, bool) {
		u, ok := f(r.Context())
		return u, ok && u != ""
	}
}

// ContextValue returns the request context's value for key: a string, or
// a fmt.Stringer's String(); anything else (or nothing) is no value.
func ContextValue(key any) KeyFunc {
	return User(func(ctx context.Context) (string, bool) {
		switch v := ctx.Value(key).(type) {
		case string:
			return v, true
		case fmt.Stringer:
			return v.String(), true
		}
		return "", false
	})
}
