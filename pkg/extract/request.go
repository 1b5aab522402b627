package extract

import (
	"net/netip"
	"strings"
)

// Request is the protocol-neutral view of one HTTP request that extractors
// read. The ext_authz handler fills it from a CheckRequest without copying
// strings; explain fills it from flags. A Request is read-only while an
// Extractor runs.
type Request struct {
	// Method is the HTTP method, e.g. "GET".
	Method string
	// Host is the :authority (or Host) value; it may carry a port.
	Host string
	// Path is the request path without the query string, not decoded.
	Path string
	// Query is the raw query string, without the leading '?'.
	Query string
	// Headers maps lower-case header names to their values; Envoy merges
	// repeated headers with ",". Only looked up, never iterated, so its size
	// does not matter to extraction.
	Headers map[string]string
	// Peer is the address of the downstream peer as the proxy saw it (the
	// ext_authz source address). The zero Addr means unknown.
	Peer netip.Addr
}

// SetPathQuery sets Path and Query from a request target that may carry a
// query string and a fragment, as Envoy's CheckRequest path does
// ("/a/b?x=1#f"). The fragment is dropped. It does not allocate.
func (r *Request) SetPathQuery(target string) {
	if i := strings.IndexByte(target, '#'); i >= 0 {
		target = target[:i]
	}
	r.Path, r.Query = target, ""
	if i := strings.IndexByte(target, '?'); i >= 0 {
		r.Path, r.Query = target[:i], target[i+1:]
	}
}

// Header returns the value of the header with the lower-case name and
// whether it is present and non-empty.
func (r *Request) Header(name string) (string, bool) {
	v, ok := r.Headers[name]
	return v, ok && v != ""
}
