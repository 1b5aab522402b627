package extract

import (
	"net/netip"
	"strings"
)

// ClientIP returns the request's client address as ClientIPOptions define
// it, and false when there is none: no peer, an X-Forwarded-For shorter
// than the trusted hops, or a malformed entry where the trusted one should
// be. The address is unmapped (::ffff:1.2.3.4 is 1.2.3.4) and has no zone.
// It does not allocate.
func (x *Extractor) ClientIP(r *Request) (netip.Addr, bool) {
	if hops := x.s.ClientIP.TrustedHops; hops > 0 {
		return nthFromRight(r.Headers["x-forwarded-for"], hops)
	}
	peer := normalizeAddr(r.Peer)
	if !peer.IsValid() {
		return netip.Addr{}, false
	}
	if len(x.trusted) == 0 || !x.isTrusted(peer) {
		return peer, true
	}
	// The peer is a trusted proxy: walk X-Forwarded-For from the right. Each
	// entry was appended by the hop to its right, so it is trustworthy as
	// long as that hop is a trusted proxy.
	s := r.Headers["x-forwarded-for"]
	last := peer
	for range maxForwardedWalk {
		if strings.TrimSpace(s) == "" {
			// Every hop is trusted: the left-most one originated the request.
			return last, true
		}
		i := strings.LastIndexByte(s, ',')
		a, ok := parseForwardedAddr(s[i+1:])
		if !ok {
			return netip.Addr{}, false
		}
		if !x.isTrusted(a) {
			return a, true
		}
		last = a
		if i < 0 {
			return last, true
		}
		s = s[:i]
	}
	return netip.Addr{}, false
}

// nthFromRight returns the n-th (1-based) comma-separated address from the
// right of xff.
func nthFromRight(xff string, n int) (netip.Addr, bool) {
	s := xff
	for k := 1; ; k++ {
		i := strings.LastIndexByte(s, ',')
		if k == n {
			return parseForwardedAddr(s[i+1:])
		}
		if i < 0 {
			return netip.Addr{}, false
		}
		s = s[:i]
	}
}

func (x *Extractor) isTrusted(a netip.Addr) bool {
	for _, p := range x.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseForwardedAddr parses one X-Forwarded-For entry: an address, an
// IPv4 address with a port, or a bracketed IPv6 address with an optional
// port, surrounded by optional spaces. Obfuscated identifiers ("unknown",
// "_hidden") and anything else are malformed.
func parseForwardedAddr(s string) (netip.Addr, bool) {
	s = strings.Trim(s, " \t")
	if s == "" || len(s) > maxAddrLen {
		return netip.Addr{}, false
	}
	if s[0] == '[' {
		if end := strings.IndexByte(s, ']'); end == len(s)-1 {
			s = s[1:end]
		} else {
			ap, err := netip.ParseAddrPort(s)
			if err != nil {
				return netip.Addr{}, false
			}
			return normalizeAddr(ap.Addr()), true
		}
	} else if strings.Count(s, ":") == 1 {
		ap, err := netip.ParseAddrPort(s)
		if err != nil {
			return netip.Addr{}, false
		}
		return normalizeAddr(ap.Addr()), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return normalizeAddr(a), true
}

func normalizeAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}
