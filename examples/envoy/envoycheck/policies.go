package envoycheck

import (
	"errors"
	"fmt"
	"slices"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// RateLimitFilter is one envoy.filters.http.ratelimit filter.
type RateLimitFilter struct {
	// Where names the filter, e.g. `listener "ingress" http_filters[1] "envoy.filters.http.ratelimit"`.
	Where  string
	Config *ratelimitv3.RateLimit
}

// ExtAuthzFilter is one envoy.filters.http.ext_authz filter.
type ExtAuthzFilter struct {
	Where  string
	Config *extauthzv3.ExtAuthz
}

// Policy is one rate_limits entry as Envoy applies it to one route: each
// request the route serves sends the descriptor that RateLimit's actions
// build to the rate limit service, under Domain.
type Policy struct {
	// Source is where the rate_limits entry is written, e.g.
	// `listener "ingress" vhost "edge" rate_limits[0]`.
	Source string
	// Route is the route it applies to.
	Route string
	// Domain is the domain sent with it.
	Domain string
	// Cluster is the route's destination cluster ("" when not fixed).
	Cluster   string
	RateLimit *routev3.RateLimit

	table *routeTable
	vhost *routev3.VirtualHost
	route *routev3.Route
}

// Setup is the rate limiting that a bootstrap configures.
type Setup struct {
	RateLimitFilters []RateLimitFilter
	ExtAuthzFilters  []ExtAuthzFilter
	// Policies holds every rate_limits entry once for each route it applies to.
	Policies []Policy
	// Unapplied lists the sources of rate_limits entries that apply to no
	// route: a stage no filter has, virtual-host limits that route-level or
	// filter-level limits override, per-filter configs keyed by a name that
	// is no rate limit filter's, or a host whose routes have no route action.
	Unapplied []string
}

// RateLimits finds the rate limit and ext_authz filters of every static
// listener's HTTP connection managers and works out which rate_limits entries
// apply to which route, following Envoy's precedence: a route's (or its
// virtual host's, or its route configuration's) RateLimitPerRoute
// rate_limits, else the filter's own rate_limits, else the route's and the
// virtual host's rate_limits of the filter's stage (per vh_rate_limits).
//
// Route configurations from RDS or scoped RDS cannot be checked offline and
// are an error, as are disabled-by-default rate limit filters.
func RateLimits(b *bootstrapv3.Bootstrap) (*Setup, error) {
	s := &Setup{}
	var errs []error
	for _, l := range b.GetStaticResources().GetListeners() {
		chains := l.GetFilterChains()
		if l.GetDefaultFilterChain() != nil {
			chains = append(slices.Clip(chains), l.GetDefaultFilterChain())
		}
		for ci, fc := range chains {
			for fi, f := range fc.GetFilters() {
				a := f.GetTypedConfig()
				if a == nil || !typeIs[*hcmv3.HttpConnectionManager](a) {
					continue
				}
				where := fmt.Sprintf("listener %q filter_chains[%d].filters[%d]", l.GetName(), ci, fi)
				if len(chains) == 1 {
					where = fmt.Sprintf("listener %q", l.GetName())
				}
				hcm, err := unpack[*hcmv3.HttpConnectionManager](a, where)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if err := s.addHCM(where, hcm); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return s, errors.Join(errs...)
}

func (s *Setup) addHCM(where string, hcm *hcmv3.HttpConnectionManager) error {
	var filters []RateLimitFilter
	var names []string
	for i, hf := range hcm.GetHttpFilters() {
		a := hf.GetTypedConfig()
		if a == nil {
			continue
		}
		fw := fmt.Sprintf("%s http_filters[%d] %q", where, i, hf.GetName())
		switch {
		case typeIs[*ratelimitv3.RateLimit](a):
			c, err := unpack[*ratelimitv3.RateLimit](a, fw)
			if err != nil {
				return err
			}
			if hf.GetDisabled() {
				return fmt.Errorf("envoycheck: %s: disabled rate limit filters are not supported", fw)
			}
			f := RateLimitFilter{Where: fw, Config: c}
			filters = append(filters, f)
			names = append(names, hf.GetName())
			s.RateLimitFilters = append(s.RateLimitFilters, f)
		case typeIs[*extauthzv3.ExtAuthz](a):
			c, err := unpack[*extauthzv3.ExtAuthz](a, fw)
			if err != nil {
				return err
			}
			s.ExtAuthzFilters = append(s.ExtAuthzFilters, ExtAuthzFilter{Where: fw, Config: c})
		}
	}

	rc := hcm.GetRouteConfig()
	if rc == nil {
		if len(filters) > 0 {
			return fmt.Errorf("envoycheck: %s: only an inline route_config can be checked (not rds or scoped_routes)", where)
		}
		return nil
	}

	// Every rate_limits entry anywhere, by source; marked when applied.
	applied := map[string]bool{}
	var order []string
	note := func(src string) {
		if _, ok := applied[src]; !ok {
			applied[src] = false
			order = append(order, src)
		}
	}
	for i, f := range filters {
		for j := range f.Config.GetRateLimits() {
			note(fmt.Sprintf("%s rate_limits[%d]", filters[i].Where, j))
		}
	}
	// Per-filter configs keyed by names that are no rate limit filter's.
	perFilter := func(w string, m map[string]*anypb.Any) error {
		for name, a := range m {
			inner, err := perRouteConfig(a, w)
			if err != nil {
				return err
			}
			if inner == nil {
				continue
			}
			for j := range inner.GetRateLimits() {
				src := fmt.Sprintf("%s typed_per_filter_config[%q] rate_limits[%d]", w, name, j)
				note(src)
			}
		}
		return nil
	}
	rcw := where + " route_config"
	if err := perFilter(rcw, rc.GetTypedPerFilterConfig()); err != nil {
		return err
	}
	for _, vh := range rc.GetVirtualHosts() {
		vw := fmt.Sprintf("%s vhost %q", where, vh.GetName())
		for j := range vh.GetRateLimits() {
			note(fmt.Sprintf("%s rate_limits[%d]", vw, j))
		}
		if err := perFilter(vw, vh.GetTypedPerFilterConfig()); err != nil {
			return err
		}
		for ri, r := range vh.GetRoutes() {
			rw := routeName(vw, ri, r)
			for j := range r.GetRoute().GetRateLimits() {
				note(fmt.Sprintf("%s rate_limits[%d]", rw, j))
			}
			if err := perFilter(rw, r.GetTypedPerFilterConfig()); err != nil {
				return err
			}
		}
	}

	table := &routeTable{where: where, vhosts: rc.GetVirtualHosts()}
	for fi, f := range filters {
		name := names[fi]
		for _, vh := range rc.GetVirtualHosts() {
			vw := fmt.Sprintf("%s vhost %q", where, vh.GetName())
			for ri, r := range vh.GetRoutes() {
				ra := r.GetRoute()
				if ra == nil {
					continue // redirect or direct_response: the filter never calls the service
				}
				rw := routeName(vw, ri, r)
				cfg, cfgW := perRouteOf([]*anypb.Any{r.GetTypedPerFilterConfig()[name], vh.GetTypedPerFilterConfig()[name],
					rc.GetTypedPerFilterConfig()[name]}, []string{rw, vw, rcw})
				if disabledFor(r, vh, rc, name) {
					continue
				}
				domain := f.Config.GetDomain()
				if cfg.GetDomain() != "" {
					domain = cfg.GetDomain()
				}
				add := func(src string, rl *routev3.RateLimit) {
					applied[src] = true
					s.Policies = append(s.Policies, Policy{
						Source: src, Route: rw, Domain: domain, Cluster: ra.GetCluster(), RateLimit: rl,
						table: table, vhost: vh, route: r,
					})
				}
				switch {
				case len(cfg.GetRateLimits()) > 0:
					for j, rl := range cfg.GetRateLimits() {
						add(fmt.Sprintf("%s typed_per_filter_config[%q] rate_limits[%d]", cfgW, name, j), rl)
					}
				case len(f.Config.GetRateLimits()) > 0:
					for j, rl := range f.Config.GetRateLimits() {
						add(fmt.Sprintf("%s rate_limits[%d]", f.Where, j), rl)
					}
				default:
					stage := f.Config.GetStage()
					routeHas := false
					for j, rl := range ra.GetRateLimits() {
						if rl.GetStage().GetValue() == stage {
							routeHas = true
							add(fmt.Sprintf("%s rate_limits[%d]", rw, j), rl)
						}
					}
					useVH := !routeHas
					switch cfg.GetVhRateLimits() {
					case ratelimitv3.RateLimitPerRoute_INCLUDE:
						useVH = true
					case ratelimitv3.RateLimitPerRoute_IGNORE:
						useVH = false
					}
					if useVH {
						for j, rl := range vh.GetRateLimits() {
							if rl.GetStage().GetValue() == stage {
								add(fmt.Sprintf("%s rate_limits[%d]", vw, j), rl)
							}
						}
					}
				}
			}
		}
	}
	for _, src := range order {
		if !applied[src] {
			s.Unapplied = append(s.Unapplied, src)
		}
	}
	return nil
}

func routeName(vw string, i int, r *routev3.Route) string {
	if r.GetName() != "" {
		return fmt.Sprintf("%s route %q", vw, r.GetName())
	}
	return fmt.Sprintf("%s routes[%d]", vw, i)
}

// perRouteConfig unpacks a typed_per_filter_config value meant for a rate
// limit filter: a RateLimitPerRoute, possibly wrapped in a FilterConfig. It
// returns nil for other types and for nil.
func perRouteConfig(a *anypb.Any, where string) (*ratelimitv3.RateLimitPerRoute, error) {
	if a == nil {
		return nil, nil
	}
	if typeIs[*routev3.FilterConfig](a) {
		fc, err := unpack[*routev3.FilterConfig](a, where)
		if err != nil {
			return nil, err
		}
		a = fc.GetConfig()
		if a == nil {
			return nil, nil
		}
	}
	if !typeIs[*ratelimitv3.RateLimitPerRoute](a) {
		return nil, nil
	}
	return unpack[*ratelimitv3.RateLimitPerRoute](a, where)
}

// perRouteOf returns the most specific RateLimitPerRoute among cfgs (route,
// virtual host, route configuration) and where it is written.
func perRouteOf(cfgs []*anypb.Any, wheres []string) (*ratelimitv3.RateLimitPerRoute, string) {
	for i, a := range cfgs {
		if c, err := perRouteConfig(a, wheres[i]); err == nil && c != nil {
			return c, wheres[i]
		}
	}
	return nil, ""
}

// disabledFor reports whether the most specific per-filter config of filter
// name disables it (FilterConfig{disabled: true}).
func disabledFor(r *routev3.Route, vh *routev3.VirtualHost, rc *routev3.RouteConfiguration, name string) bool {
	for _, m := range []map[string]*anypb.Any{r.GetTypedPerFilterConfig(), vh.GetTypedPerFilterConfig(), rc.GetTypedPerFilterConfig()} {
		a := m[name]
		if a == nil {
			continue
		}
		if typeIs[*routev3.FilterConfig](a) {
			fc, err := a.UnmarshalNew()
			if err != nil {
				return false
			}
			c, ok := fc.(*routev3.FilterConfig)
			return ok && c.GetDisabled()
		}
		return false
	}
	return false
}
