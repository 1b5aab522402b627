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

// addHCM adds the rate limit and ext_authz filters of hcm, written at
// where, and the policies they apply to its routes.
func (s *Setup) addHCM(where string, hcm *hcmv3.HttpConnectionManager) error {
	filters, names, err := s.addFilters(where, hcm)
	if err != nil {
		return err
	}
	rc := hcm.GetRouteConfig()
	if rc == nil {
		if len(filters) > 0 {
			return fmt.Errorf("envoycheck: %s: only an inline route_config can be checked (not rds or scoped_routes)", where)
		}
		return nil
	}
	h := &hcmPolicies{
		s: s, rc: rc, rcw: where + " route_config",
		table:   &routeTable{where: where, vhosts: rc.GetVirtualHosts()},
		applied: map[string]bool{},
	}
	if err := h.noteSources(where, filters); err != nil {
		return err
	}
	for fi, f := range filters {
		h.applyFilter(where, f, names[fi])
	}
	for _, src := range h.order {
		if !h.applied[src] {
			s.Unapplied = append(s.Unapplied, src)
		}
	}
	return nil
}

// addFilters adds the rate limit and ext_authz filters of hcm to s and
// returns the rate limit filters with their names.
func (s *Setup) addFilters(where string, hcm *hcmv3.HttpConnectionManager) ([]RateLimitFilter, []string, error) {
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
				return nil, nil, err
			}
			if hf.GetDisabled() {
				return nil, nil, fmt.Errorf("envoycheck: %s: disabled rate limit filters are not supported", fw)
			}
			f := RateLimitFilter{Where: fw, Config: c}
			filters = append(filters, f)
			names = append(names, hf.GetName())
			s.RateLimitFilters = append(s.RateLimitFilters, f)
		case typeIs[*extauthzv3.ExtAuthz](a):
			c, err := unpack[*extauthzv3.ExtAuthz](a, fw)
			if err != nil {
				return nil, nil, err
			}
			s.ExtAuthzFilters = append(s.ExtAuthzFilters, ExtAuthzFilter{Where: fw, Config: c})
		}
	}
	return filters, names, nil
}

// hcmPolicies works out the policies of one HTTP connection manager's
// inline route configuration rc.
type hcmPolicies struct {
	s     *Setup
	rc    *routev3.RouteConfiguration
	rcw   string // where rc is written
	table *routeTable
	// applied holds every rate_limits entry anywhere, by source; true once
	// applied to a route. order lists the sources in the order noted.
	applied map[string]bool
	order   []string
}

// note records the rate_limits entry src, unapplied unless already known.
func (h *hcmPolicies) note(src string) {
	if _, ok := h.applied[src]; !ok {
		h.applied[src] = false
		h.order = append(h.order, src)
	}
}

// noteSources notes every rate_limits entry: the filters', and those of the
// route configuration's, virtual hosts' and routes' per-filter configs and
// of the virtual hosts and routes themselves.
func (h *hcmPolicies) noteSources(where string, filters []RateLimitFilter) error {
	for _, f := range filters {
		for j := range f.Config.GetRateLimits() {
			h.note(fmt.Sprintf("%s rate_limits[%d]", f.Where, j))
		}
	}
	if err := h.notePerFilter(h.rcw, h.rc.GetTypedPerFilterConfig()); err != nil {
		return err
	}
	for _, vh := range h.rc.GetVirtualHosts() {
		vw := fmt.Sprintf("%s vhost %q", where, vh.GetName())
		for j := range vh.GetRateLimits() {
			h.note(fmt.Sprintf("%s rate_limits[%d]", vw, j))
		}
		if err := h.notePerFilter(vw, vh.GetTypedPerFilterConfig()); err != nil {
			return err
		}
		for ri, r := range vh.GetRoutes() {
			rw := routeName(vw, ri, r)
			for j := range r.GetRoute().GetRateLimits() {
				h.note(fmt.Sprintf("%s rate_limits[%d]", rw, j))
			}
			if err := h.notePerFilter(rw, r.GetTypedPerFilterConfig()); err != nil {
				return err
			}
		}
	}
	return nil
}

// notePerFilter notes the rate_limits entries of the per-filter configs m
// written at w, including those keyed by names that are no rate limit
// filter's.
func (h *hcmPolicies) notePerFilter(w string, m map[string]*anypb.Any) error {
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
			h.note(src)
		}
	}
	return nil
}

// applyFilter adds the policies that rate limit filter f, named name,
// applies to every route with a route action.
func (h *hcmPolicies) applyFilter(where string, f RateLimitFilter, name string) {
	for _, vh := range h.rc.GetVirtualHosts() {
		vw := fmt.Sprintf("%s vhost %q", where, vh.GetName())
		for ri, r := range vh.GetRoutes() {
			if r.GetRoute() == nil {
				continue // redirect or direct_response: the filter never calls the service
			}
			h.applyRoute(f, name, routeTarget{where: routeName(vw, ri, r), vhostWhere: vw, vhost: vh, route: r})
		}
	}
}

// routeTarget is one route that a rate limit filter applies policies to.
type routeTarget struct {
	where      string // the route's
	vhostWhere string // its virtual host's
	domain     string
	vhost      *routev3.VirtualHost
	route      *routev3.Route
}

// applyRoute adds the policies that rate limit filter f, named name,
// applies to route t: the most specific per-filter config's rate_limits,
// else the filter's, else the route's and virtual host's of its stage.
func (h *hcmPolicies) applyRoute(f RateLimitFilter, name string, t routeTarget) {
	rc, vh, r := h.rc, t.vhost, t.route
	cfg, cfgW := perRouteOf([]*anypb.Any{r.GetTypedPerFilterConfig()[name], vh.GetTypedPerFilterConfig()[name],
		rc.GetTypedPerFilterConfig()[name]}, []string{t.where, t.vhostWhere, h.rcw})
	if disabledFor(r, vh, rc, name) {
		return
	}
	t.domain = f.Config.GetDomain()
	if cfg.GetDomain() != "" {
		t.domain = cfg.GetDomain()
	}
	switch {
	case len(cfg.GetRateLimits()) > 0:
		for j, rl := range cfg.GetRateLimits() {
			h.add(t, fmt.Sprintf("%s typed_per_filter_config[%q] rate_limits[%d]", cfgW, name, j), rl)
		}
	case len(f.Config.GetRateLimits()) > 0:
		for j, rl := range f.Config.GetRateLimits() {
			h.add(t, fmt.Sprintf("%s rate_limits[%d]", f.Where, j), rl)
		}
	default:
		h.applyStage(f.Config.GetStage(), cfg.GetVhRateLimits(), t)
	}
}

// applyStage adds the route's rate_limits of stage to route t and, when
// the route has none of that stage or vh_rate_limits says INCLUDE (unless
// it says IGNORE), its virtual host's.
func (h *hcmPolicies) applyStage(stage uint32, vhRateLimits ratelimitv3.RateLimitPerRoute_VhRateLimitsOptions, t routeTarget) {
	routeHas := false
	for j, rl := range t.route.GetRoute().GetRateLimits() {
		if rl.GetStage().GetValue() == stage {
			routeHas = true
			h.add(t, fmt.Sprintf("%s rate_limits[%d]", t.where, j), rl)
		}
	}
	useVH := !routeHas
	switch vhRateLimits {
	case ratelimitv3.RateLimitPerRoute_INCLUDE:
		useVH = true
	case ratelimitv3.RateLimitPerRoute_IGNORE:
		useVH = false
	}
	if useVH {
		for j, rl := range t.vhost.GetRateLimits() {
			if rl.GetStage().GetValue() == stage {
				h.add(t, fmt.Sprintf("%s rate_limits[%d]", t.vhostWhere, j), rl)
			}
		}
	}
}

// add applies the rate_limits entry rl, written at src, to route t.
func (h *hcmPolicies) add(t routeTarget, src string, rl *routev3.RateLimit) {
	h.applied[src] = true
	h.s.Policies = append(h.s.Policies, Policy{
		Source: src, Route: t.where, Domain: t.domain, Cluster: t.route.GetRoute().GetCluster(), RateLimit: rl,
		table: h.table, vhost: t.vhost, route: t.route,
	})
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
