package envoycheck

import (
	"errors"
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/server"
)

// Match is what one policy does for one request.
type Match struct {
	Policy  Policy
	Request string
	// Descriptor is what Envoy sends; nil when it sends nothing for this
	// policy and request.
	Descriptor descriptor.Descriptor
	// Rule is the rule Descriptor matches, or nil.
	Rule *descriptor.Rule
}

// String formats m for test logs.
func (m Match) String() string {
	if m.Descriptor == nil {
		return fmt.Sprintf("%s | %s | not sent", m.Policy.Source, m.Request)
	}
	rule := "NO RULE"
	if m.Rule != nil {
		rule = m.Rule.Path
		if m.Rule.Unlimited {
			rule += " (unlimited)"
		} else {
			rule += fmt.Sprintf(" (%d per %s)", m.Rule.Limit.Requests, m.Rule.Unit)
		}
	}
	return fmt.Sprintf("%s | %s | domain %q %s → %s", m.Policy.Source, m.Request, m.Policy.Domain, m.Descriptor.String(), rule)
}

// CheckRules evaluates every policy of s with each request of reqs that
// Envoy routes to the policy's route, and with one request synthesized for
// it (see Synthesize), matches each descriptor
// Envoy would send against rules with the server's matcher, and returns all
// matches. The error lists, all at once, every way a rate_limits entry can
// silently do nothing:
//   - it applies to no route (Setup.Unapplied);
//   - its domain has no rules;
//   - no request makes Envoy send its descriptor;
//   - a descriptor Envoy sends matches no rule;
//   - an action cannot be evaluated.
func CheckRules(s *Setup, rules *descriptor.Set, reqs []*Request) ([]Match, error) {
	var errs []error
	for _, src := range s.Unapplied {
		errs = append(errs, fmt.Errorf("%s: applies to no route", src))
	}
	var out []Match
	for _, p := range s.Policies {
		if !rules.HasDomain(p.Domain) {
			errs = append(errs, fmt.Errorf("%s: domain %q has no rules", p.Source, p.Domain))
			continue
		}
		all := reqs
		syn, synErr := Synthesize(p)
		if synErr == nil {
			all = append(all[:len(all):len(all)], syn)
		}
		sent := false
		for _, req := range all {
			if serves, err := p.Serves(req); err != nil {
				errs = append(errs, fmt.Errorf("%s: request %q: %w", p.Source, req.Name, err))
				continue
			} else if !serves {
				continue
			}
			d, ok, err := Descriptor(p.RateLimit, p.Cluster, req)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: request %q: %w", p.Source, req.Name, err))
				continue
			}
			m := Match{Policy: p, Request: req.Name}
			if ok {
				sent = true
				m.Descriptor = d
				// Matched as extauthz matches it: API keys canonical.
				if r, found := rules.Match(p.Domain, server.CanonicalDescriptor(rules, d)); found {
					m.Rule = r
				} else {
					errs = append(errs, fmt.Errorf("%s: request %q: descriptor %s matches no rule of domain %q",
						p.Source, req.Name, d.String(), p.Domain))
				}
			}
			out = append(out, m)
		}
		if !sent {
			why := "add a request that does"
			if synErr != nil {
				why = synErr.Error()
			}
			errs = append(errs, fmt.Errorf("%s: no request makes Envoy send its descriptor on %s: %s", p.Source, p.Route, why))
		}
	}
	return out, errors.Join(errs...)
}

// Lint checks the wiring that ValidateAll cannot see: the rate limit and
// ext_authz filters name a static cluster that speaks HTTP/2 and use the v3
// transport API; every route's cluster exists; and the router is the last
// HTTP filter of every connection manager.
func Lint(b *bootstrapv3.Bootstrap, s *Setup) error {
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range b.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	var errs []error
	grpcTarget := func(where string, gs *corev3.GrpcService) {
		if gs.GetEnvoyGrpc() == nil {
			return // google_grpc dials by itself
		}
		name := gs.GetEnvoyGrpc().GetClusterName()
		c, ok := clusters[name]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: grpc cluster %q is not a static cluster", where, name))
		case !speaksHTTP2(c):
			errs = append(errs, fmt.Errorf("%s: grpc cluster %q does not enable HTTP/2 (typed_extension_protocol_options %q explicit_http_config.http2_protocol_options)",
				where, name, "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"))
		}
	}
	for _, f := range s.RateLimitFilters {
		rls := f.Config.GetRateLimitService()
		if rls.GetTransportApiVersion() != corev3.ApiVersion_V3 {
			errs = append(errs, fmt.Errorf("%s: rate_limit_service.transport_api_version is %s, want V3", f.Where, rls.GetTransportApiVersion()))
		}
		grpcTarget(f.Where, rls.GetGrpcService())
	}
	for _, f := range s.ExtAuthzFilters {
		if v := f.Config.GetTransportApiVersion(); v != corev3.ApiVersion_V3 {
			errs = append(errs, fmt.Errorf("%s: transport_api_version is %s, want V3", f.Where, v))
		}
		if gs := f.Config.GetGrpcService(); gs != nil {
			grpcTarget(f.Where, gs)
		}
		if hs := f.Config.GetHttpService(); hs != nil {
			if _, ok := clusters[hs.GetServerUri().GetCluster()]; !ok {
				errs = append(errs, fmt.Errorf("%s: http_service cluster %q is not a static cluster", f.Where, hs.GetServerUri().GetCluster()))
			}
		}
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		chains := append(l.GetFilterChains()[:len(l.GetFilterChains()):len(l.GetFilterChains())], l.GetDefaultFilterChain())
		for _, fc := range chains {
			for _, nf := range fc.GetFilters() {
				if nf.GetTypedConfig() == nil || !typeIs[*hcmv3.HttpConnectionManager](nf.GetTypedConfig()) {
					continue
				}
				where := fmt.Sprintf("listener %q", l.GetName())
				hcm, err := unpack[*hcmv3.HttpConnectionManager](nf.GetTypedConfig(), where)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				hf := hcm.GetHttpFilters()
				if len(hf) == 0 || hf[len(hf)-1].GetTypedConfig() == nil || !typeIs[*routerv3.Router](hf[len(hf)-1].GetTypedConfig()) {
					errs = append(errs, fmt.Errorf("%s: the last http filter must be envoy.filters.http.router", where))
				}
				for i, f := range hf[:max(len(hf)-1, 0)] {
					if f.GetTypedConfig() != nil && typeIs[*routerv3.Router](f.GetTypedConfig()) {
						errs = append(errs, fmt.Errorf("%s: http_filters[%d]: the router must be the last filter", where, i))
					}
				}
				for _, vh := range hcm.GetRouteConfig().GetVirtualHosts() {
					for ri, r := range vh.GetRoutes() {
						if c := r.GetRoute().GetCluster(); c != "" {
							if _, ok := clusters[c]; !ok {
								errs = append(errs, fmt.Errorf("%s: route %q: cluster %q is not a static cluster",
									where, routeName(vh.GetName(), ri, r), c))
							}
						}
					}
				}
			}
		}
	}
	return errors.Join(errs...)
}

// speaksHTTP2 reports whether Envoy opens HTTP/2 connections to c, as gRPC
// needs.
func speaksHTTP2(c *clusterv3.Cluster) bool {
	a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
	if a == nil {
		return false
	}
	o, err := unpack[*upstreamhttpv3.HttpProtocolOptions](a, c.GetName())
	if err != nil {
		return false
	}
	return o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil
}
