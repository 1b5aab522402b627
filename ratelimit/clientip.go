package ratelimit

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientIPOptions says which forwarding proxies to believe. The zero value
// believes none: the client is the connection's peer (RemoteAddr).
type ClientIPOptions struct {
	// TrustedProxies are the networks of your proxies. The forwarding
	// header is read only from a peer in them, right to left: the client is
	// the right-most address not in them (or the left-most when all are).
	TrustedProxies []netip.Prefix
	// TrustedHops, when positive, is the number of your proxies that append
	// to the forwarding header: the client is the TrustedHops-th address
	// from the right. A shorter header, or an invalid address there, gives
	// the peer. With TrustedProxies set too, only a trusted peer's header
	// is read.
	TrustedHops int
	// Header is the forwarding header (default X-Forwarded-For), a list of
	// addresses each proxy appends to.
	Header string
	// IPv6Prefix, when positive, counts IPv6 clients by network: the value
	// is the address's prefix of that length (e.g. 64 gives
	// "2001:db8:1:2::/64"), as one host often holds a whole /64 (default 0:
	// the full address; above 128 means 128).
	IPv6Prefix int
}

// ClientIP returns the client's IP address (IPv4-mapped addresses as IPv4):
// the peer's, or the one your trusted proxies forwarded (see
// ClientIPOptions and Resolve). It never takes the left-most forwarded
// address on trust: clients write whatever they like there. An address
// that does not parse is no value.
func ClientIP(o ClientIPOptions) KeyFunc {
	header := http.CanonicalHeaderKey(o.Header)
	if header == "" {
		header = "X-Forwarded-For"
	}
	return func(r *http.Request) (string, bool) {
		if len(o.TrustedProxies) == 0 && o.TrustedHops <= 0 {
			return o.Resolve(r.RemoteAddr, nil)
		}
		return o.Resolve(r.RemoteAddr, r.Header.Values(header))
	}
}

// Resolve returns the client's IP address given the connection's peer
// address (host or host:port) and the forwarding header's lines, in order:
// the rule ClientIP applies to HTTP requests, for other transports
// (grpclimit.ClientIP applies it to gRPC metadata). o.Header is not read.
func (o ClientIPOptions) Resolve(peerAddr string, forwardedFor []string) (string, bool) {
	host := peerAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	peer, ok := parseIP(host)
	if !ok {
		return "", false
	}
	if (len(o.TrustedProxies) == 0 && o.TrustedHops <= 0) || (len(o.TrustedProxies) > 0 && !o.trusted(peer)) {
		return o.text(host, peer), true
	}
	s, a := forwarded(forwardedFor, o.TrustedHops, o.trusted)
	if !a.IsValid() {
		return o.text(host, peer), true
	}
	return o.text(s, a), true
}

func (o ClientIPOptions) trusted(a netip.Addr) bool {
	for _, p := range o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// text returns the value of client address a, read as s: its network
// under IPv6Prefix, else its canonical text.
func (o ClientIPOptions) text(s string, a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() && o.IPv6Prefix > 0 {
		if p, err := a.WithZone("").Prefix(min(o.IPv6Prefix, 128)); err == nil {
			return p.String()
		}
	}
	return ipString(s, a)
}

// forwarded walks the forwarding header's addresses right to left (all
// lines joined) and returns the client's: the hops-th when hops > 0, else
// the first one that is not trusted, or the last valid one seen before an
// invalid address or the left end. A zero Addr means none.
func forwarded(lines []string, hops int, trusted func(netip.Addr) bool) (string, netip.Addr) {
	var last string
	var lastAddr netip.Addr
	n := 0
	for i := len(lines) - 1; i >= 0; i-- {
		line := lines[i]
		for line != "" {
			var item string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				item, line = line[j+1:], line[:j]
			} else {
				item, line = line, ""
			}
			item = strings.TrimSpace(item)
			if item == "" {
				continue
			}
			n++
			a, ok := parseForwarded(item)
			if hops > 0 {
				if n < hops {
					continue
				}
				if !ok {
					return "", netip.Addr{}
				}
				return item, a
			}
			if !ok {
				return last, lastAddr
			}
			if !trusted(a) {
				return item, a
			}
			last, lastAddr = item, a
		}
	}
	if hops > 0 {
		return "", netip.Addr{}
	}
	return last, lastAddr
}

// parseForwarded parses one forwarded address: an IP, or an IP with a port
// ("192.0.2.1:443", "[2001:db8::1]:443").
func parseForwarded(s string) (netip.Addr, bool) {
	if a, ok := parseIP(s); ok {
		return a, true
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr(), true
}

func parseIP(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	return a, err == nil
}

// ipString returns a's canonical text (a unmapped), reusing s (its text
// as read) when it already is: the common case costs no allocation.
func ipString(s string, a netip.Addr) string {
	if a.Is4() && len(s) <= len("255.255.255.255") && strings.IndexByte(s, ':') < 0 {
		return s
	}
	return a.String()
}
