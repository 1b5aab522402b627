package server

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// Per-rule backend routing. A rule's Chain (descriptor.Rule.Chain, set
// when the rules are built) names the backend chain that counts it; ""
// is the default chain, Options.Store. A request whose counted
// descriptors all use the default chain makes one Take as before. One
// that uses several chains makes one Take per chain, concurrently, each
// with that chain's requests in request order, and the results go back to
// their descriptors.
//
// Count modes across chains: CountIfAllAllowed is exact within each chain
// (its Take counts its requests only if none of them is refused) and best
// effort across chains: each chain decides its part at the same time, so a
// refusal in one chain does not un-count the hits another chain admitted
// (there is no undo). The answer is still OVER_LIMIT when any descriptor is
// refused.
//
// Failure modes: a chain that cannot decide answers its own descriptors by
// the domain's failure mode, while the other chains' results stand:
// failure_mode open admits them, closed refuses them, and envoy answers the
// whole request UNAVAILABLE, as with one chain.

// route is the part of a routed request that one chain counts:
// sc.reqs[lo:hi].
type route struct {
	chain  string
	lo, hi int
	err    error
}

// RouteError is returned by a routed count when some chains could not
// decide; the requests of the other chains have their results.
type RouteError struct {
	// Failed names the failed chains, Err joins their errors.
	Failed []string
	Err    error
	// ranges are the failed chains' requests in the scratch.
	ranges [][2]int
}

func (e *RouteError) Error() string {
	return fmt.Sprintf("chains %v: %v", e.Failed, e.Err)
}

func (e *RouteError) Unwrap() error { return e.Err }

// countRouted counts the n counted verdicts (keyed in request order) with
// one Take per chain, concurrently.
func (s *Server) countRouted(ctx context.Context, mode limiter.Mode, sc *scratch, n int) error {
	vs := sc.verdicts
	// The chains in order of first use.
	sc.routes = sc.routes[:0]
	for i := range vs {
		if v := &vs[i]; v.kind == kindCounted && !hasRoute(sc.routes, v.rule.Chain) {
			sc.routes = append(sc.routes, route{chain: v.rule.Chain})
		}
	}
	// Place each chain's requests together, in request order.
	sc.reqs = resize(sc.reqs, n)
	sc.res = resize(sc.res, n)
	next := 0
	for g := range sc.routes {
		rt := &sc.routes[g]
		rt.lo = next
		for i := range vs {
			v := &vs[i]
			if v.kind != kindCounted || v.rule.Chain != rt.chain {
				continue
			}
			start := 0
			if v.req > 0 {
				start = sc.keyEnds[v.req-1]
			}
			key := bytesString(sc.key[start:sc.keyEnds[v.req]])
			sc.reqs[next] = limiter.Request{Key: key, Limit: v.limit, Hits: v.hits, Shadow: v.shadow, Lease: v.rule.Lease}
			v.req = next // each verdict is placed once: its key index is read no more
			next++
		}
		rt.hi = next
	}
	s.takeRoutes(ctx, mode, sc)
	return routeResult(sc)
}

func hasRoute(rs []route, chain string) bool {
	for i := range rs {
		if rs[i].chain == chain {
			return true
		}
	}
	return false
}

// takeRoutes calls every route's chain, the first one on this goroutine.
func (s *Server) takeRoutes(ctx context.Context, mode limiter.Mode, sc *scratch) {
	var wg sync.WaitGroup
	for g := 1; g < len(sc.routes); g++ {
		wg.Add(1)
		go func(rt *route) {
			defer wg.Done()
			rt.err = s.takeRoute(ctx, mode, rt, sc)
		}(&sc.routes[g])
	}
	sc.routes[0].err = s.takeRoute(ctx, mode, &sc.routes[0], sc)
	wg.Wait()
}

func (s *Server) takeRoute(ctx context.Context, mode limiter.Mode, rt *route, sc *scratch) error {
	st := s.store
	if rt.chain != "" {
		st = s.chains[rt.chain]
		if st == nil {
			return fmt.Errorf("server: no backend chain %q (the chains changed without a restart?)", rt.chain)
		}
	}
	return st.Take(ctx, mode, sc.reqs[rt.lo:rt.hi], sc.res[rt.lo:rt.hi])
}

// routeResult copies the results of the routes that answered and returns
// nil, the error of a request error (which wins: it is a bug), or a
// *RouteError naming the chains that failed.
func routeResult(sc *scratch) error {
	var re *RouteError
	for i := range sc.routes {
		rt := &sc.routes[i]
		if rt.err == nil {
			continue
		}
		if limiter.IsRequestError(rt.err) {
			return rt.err
		}
		if re == nil {
			re = &RouteError{}
		}
		name := rt.chain
		if name == "" {
			name = "default"
		}
		re.Failed = append(re.Failed, name)
		re.Err = errors.Join(re.Err, fmt.Errorf("chain %s: %w", name, rt.err))
		re.ranges = append(re.ranges, [2]int{rt.lo, rt.hi})
	}
	sc.copyResults()
	if re != nil {
		return re
	}
	return nil
}

// CheckRoutes returns an error when a rule of snap names a chain the server
// does not have (Options.Chains): New refuses such a snapshot, and a reload
// should too before Swap.
func (s *Server) CheckRoutes(snap *Snapshot) error {
	rules := snap.Rules()
	var errs []error
	for _, d := range rules.Domains() {
		for _, r := range rules.Rules(d) {
			if r.Chain != "" && s.chains[r.Chain] == nil {
				errs = append(errs, fmt.Errorf("server: rule %s (%s) uses backend chain %q, which this process does not have (chains change on restart)", r.Path, r.Source, r.Chain))
			}
		}
		// Limit overrides take their chain from chains_by_unit.
		for u := descriptor.UnitSecond; u <= descriptor.UnitWeek; u++ {
			if r, ok := rules.Override(d, u, 1); ok && r.Chain != "" && s.chains[r.Chain] == nil {
				errs = append(errs, fmt.Errorf("server: limit overrides of unit %s use backend chain %q, which this process does not have (chains change on restart)", u, r.Chain))
			}
		}
	}
	return errors.Join(errs...)
}
