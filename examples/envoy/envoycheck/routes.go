package envoycheck

import (
	"fmt"
	"net"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// routeTable is the inline route configuration of one connection manager.
type routeTable struct {
	where  string
	vhosts []*routev3.VirtualHost
}

// Serves reports whether req is routed to p's route: the first virtual host
// whose domains match req.Authority (exact, then the longest "*.suffix",
// then the longest "prefix*", then "*") and, in it, the first route whose
// match accepts req.
func (p Policy) Serves(req *Request) (bool, error) {
	_, r, err := selectRoute(p.table.vhosts, req)
	if err != nil {
		return false, fmt.Errorf("%s: %w", p.table.where, err)
	}
	return r == p.route, nil
}

func selectRoute(vhosts []*routev3.VirtualHost, req *Request) (*routev3.VirtualHost, *routev3.Route, error) {
	vh := selectVHost(vhosts, strings.ToLower(req.Authority))
	if vh == nil {
		if host, _, err := net.SplitHostPort(req.Authority); err == nil {
			vh = selectVHost(vhosts, strings.ToLower(host))
		}
	}
	if vh == nil {
		return nil, nil, nil
	}
	for _, r := range vh.GetRoutes() {
		ok, err := matchRoute(r.GetMatch(), req)
		if err != nil {
			return nil, nil, fmt.Errorf("vhost %q: %w", vh.GetName(), err)
		}
		if ok {
			return vh, r, nil
		}
	}
	return vh, nil, nil
}

func selectVHost(vhosts []*routev3.VirtualHost, host string) *routev3.VirtualHost {
	var best *routev3.VirtualHost
	bestRank, bestLen := 0, -1
	for _, vh := range vhosts {
		for _, d := range vh.GetDomains() {
			d = strings.ToLower(d)
			rank, n := 0, len(d)
			switch {
			case d == host:
				return vh
			case d == "*":
				rank = 1
			case strings.HasPrefix(d, "*") && strings.HasSuffix(host, d[1:]) && len(host) > len(d)-1:
				rank = 3
			case strings.HasSuffix(d, "*") && strings.HasPrefix(host, d[:len(d)-1]) && len(host) > len(d)-1:
				rank = 2
			default:
				continue
			}
			if rank > bestRank || rank == bestRank && n > bestLen {
				best, bestRank, bestLen = vh, rank, n
			}
		}
	}
	return best
}

func matchRoute(m *routev3.RouteMatch, req *Request) (bool, error) {
	path, _, _ := strings.Cut(req.Path, "?")
	fold := func(s string) string { return s }
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		fold = strings.ToLower
	}
	switch x := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		if !strings.HasPrefix(fold(path), fold(x.Prefix)) {
			return false, nil
		}
	case *routev3.RouteMatch_Path:
		if fold(path) != fold(x.Path) {
			return false, nil
		}
	case *routev3.RouteMatch_PathSeparatedPrefix:
		p := fold(x.PathSeparatedPrefix)
		if fp := fold(path); fp != p && !strings.HasPrefix(fp, p+"/") {
			return false, nil
		}
	case *routev3.RouteMatch_SafeRegex:
		re, err := regexp.Compile(`^(?:` + x.SafeRegex.GetRegex() + `)$`)
		if err != nil {
			return false, err
		}
		if !re.MatchString(path) {
			return false, nil
		}
	default:
		return false, fmt.Errorf("route match %T: %w", x, ErrUnsupported)
	}
	if m.GetGrpc() != nil || len(m.GetDynamicMetadata()) > 0 || m.GetFilterState() != nil {
		return false, fmt.Errorf("route match on grpc, dynamic_metadata or filter_state: %w", ErrUnsupported)
	}
	for _, hm := range m.GetHeaders() {
		ok, err := matchHeader(hm, req)
		if err != nil || !ok {
			return false, err
		}
	}
	for _, qm := range m.GetQueryParameters() {
		ok, err := matchQuery(qm, req)
		if err != nil || !ok {
			return false, err
		}
	}
	return true, nil
}

// routeTo changes req's path and authority so that it can reach route r of
// vh: a path that r's match accepts and a host that vh's domains accept. The
// caller checks with Serves that no earlier route or host takes it.
func routeTo(req *Request, vh *routev3.VirtualHost, r *routev3.Route) {
	if ds := vh.GetDomains(); len(ds) > 0 {
		d := ds[0]
		switch {
		case d == "*":
		case strings.HasPrefix(d, "*"):
			req.Authority = "sample" + d[1:]
		case strings.HasSuffix(d, "*"):
			req.Authority = d[:len(d)-1] + "sample"
		default:
			req.Authority = d
		}
	}
	_, q, hasQ := strings.Cut(req.Path, "?")
	path := ""
	switch x := r.GetMatch().GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		path = x.Prefix
	case *routev3.RouteMatch_Path:
		path = x.Path
	case *routev3.RouteMatch_PathSeparatedPrefix:
		path = x.PathSeparatedPrefix
	default:
		return
	}
	if path == "" {
		path = "/"
	}
	if hasQ {
		path += "?" + q
	}
	req.Path = path
	for _, hm := range r.GetMatch().GetHeaders() {
		if v, ok := satisfying(hm); ok && v != nil {
			req.setHeader(hm.GetName(), *v)
		}
	}
}
