package server

import (
	"context"
	"sync"
	"time"
	"unsafe"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// kind classifies the decision for one descriptor of a request.
type kind uint8

const (
	kindUnmatched kind = iota // no rule matches (or unknown domain): OK, nothing counted
	kindUnlimited             // an unlimited rule matches: OK, nothing counted
	kindReplaced              // its rule is replaced by another descriptor's rule: OK, nothing counted
	kindCounted               // counted against limit
)

// override is Envoy's per-descriptor limit override
// (RateLimitDescriptor.limit), validated.
type override struct {
	set      bool
	requests uint32
	unit     descriptor.Unit
	mult     uint32 // unit_multiplier, 1 when unset
}

// verdict is the decision for one descriptor of a request, independent of
// the API that asked. The API handler fills desc, hits and ovr (and, on
// the ext_authz path, ns, reqKey and reqTenant); decide fills the rest.
type verdict struct {
	desc descriptor.Descriptor // aliases the request and the scratch; valid during the request only
	hits int64
	ovr  override
	// ns namespaces the counter key (descriptor.AppendCounterKey): the
	// request's tenant when tenants do not share counters, else "".
	ns string
	// reqKey and reqTenant are the request's own listed API key and tenant
	// (ext_authz), whose tiers and overrides also apply to descriptors that
	// do not carry them (Rule.ResolveRequest); nil for none.
	reqKey, reqTenant *descriptor.Listing

	kind    kind
	rule    *descriptor.Rule // the rule that applies (the matched one, or ovrRule), nil when none
	ovrRule descriptor.Rule  // the rule of an override (Set.Override)
	shadow  bool
	quota   bool            // the rule is in quota mode (descriptor.Rule.Quota)
	limit   limiter.Limit   // the effective limit (kindCounted)
	unit    descriptor.Unit // the effective limit's unit
	mult    uint32          // unit multiplier to report; 0 or 1 = one unit
	result  limiter.Result
	req     int // index of the verdict's request in scratch.reqs
}

// refused reports whether v is over its limit, its DescriptorStatus
// OVER_LIMIT (a shadow rule never is). Whether the request is refused is
// refuses'.
func (v *verdict) refused() bool {
	return v.kind == kindCounted && !v.result.Allowed && !v.shadow
}

// refuses reports whether the decision vs refuses the request, as
// envoyproxy/ratelimit combines its descriptors: when a descriptor not in
// quota mode is over its limit, or when the request has quota descriptors
// and every one of them is over. A descriptor is in quota mode when its
// rule is (quota_mode), or, with allQuota (the server-wide quota_mode),
// whenever it is not unlimited: an unmatched or replaced descriptor then
// counts as a quota descriptor with room left.
func refuses(vs []verdict, allQuota bool) bool {
	quota, over := 0, 0
	for i := range vs {
		v := &vs[i]
		if v.kind == kindUnlimited {
			continue
		}
		if !allQuota && !(v.quota && v.kind == kindCounted) {
			if v.refused() {
				return true
			}
			continue
		}
		quota++
		if v.refused() {
			over++
		}
	}
	return quota > 0 && over == quota
}

// scratch is the per-request working memory, pooled: one request allocates
// none of it once the pool is warm.
type scratch struct {
	entries  []descriptor.Entry
	verdicts []verdict
	reqs     []limiter.Request
	res      []limiter.Result
	key      []byte // every counter key of the request, back to back
	keyEnds  []int  // keyEnds[i] is where request i's key ends in key
	headers  []header
	matched  []*descriptor.Rule // each verdict's rule, for applyReplaces
	keyIDs   []byte             // canonical API keys of the request (canonicalKeys), aliased by entries
	now      time.Time          // when the request's API keys were canonicalised; zero before
	routes   []route            // the chains of a routed request (route.go)
}

// maxPooledKeyBytes bounds the key buffer a pooled scratch keeps, so that
// one huge request does not pin its buffer forever.
const maxPooledKeyBytes = 64 << 10

// scratchPool holds scratch buffers. BenchmarkShouldRateLimit: without the
// pool one descriptor costs 12 allocations and 1000 B per request, with it
// 3 and 380 B (the response); three descriptors 15 and 2.7 kB against 3 and
// 850 B.
var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(sc *scratch) {
	if cap(sc.key) > maxPooledKeyBytes || cap(sc.keyIDs) > maxPooledKeyBytes {
		return
	}
	// Drop the references to the request so that the pool does not pin it.
	clear(sc.entries[:cap(sc.entries)])
	clear(sc.verdicts[:cap(sc.verdicts)])
	clear(sc.reqs[:cap(sc.reqs)])
	clear(sc.headers[:cap(sc.headers)])
	clear(sc.matched[:cap(sc.matched)])
	clear(sc.routes[:cap(sc.routes)])
	sc.routes = sc.routes[:0]
	sc.entries, sc.verdicts, sc.reqs, sc.res = sc.entries[:0], sc.verdicts[:0], sc.reqs[:0], sc.res[:0]
	sc.key, sc.keyEnds, sc.headers, sc.matched = sc.key[:0], sc.keyEnds[:0], sc.headers[:0], sc.matched[:0]
	sc.keyIDs, sc.now = sc.keyIDs[:0], time.Time{}
	scratchPool.Put(sc)
}

// resize returns s with length n, reusing its array when it is big enough.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// decide matches each verdict's descriptor against the rules of domain,
// applies overrides, unlimited rules and replaces, and counts every
// counted descriptor with a single Store.Take. An error is the store's: the
// verdicts then hold kinds and limits but no results.
func (s *Server) decide(ctx context.Context, snap *Snapshot, domain string, sc *scratch) error {
	vs := sc.verdicts
	rules := snap.rules
	if !rules.HasDomain(domain) {
		// Unknown domain: nothing matches, not even an override (as in
		// envoyproxy/ratelimit).
		return nil
	}
	if matchRules(rules, domain, vs) {
		applyReplaces(vs, sc)
	}
	return s.count(ctx, snap.settings.CountMode, sc)
}

// matchRules sets the kind, rule and limit of each verdict from its
// override or the rule its descriptor matches, tiers resolved, and reports
// whether a matched rule replaces others.
func matchRules(rules *descriptor.Set, domain string, vs []verdict) (replaces bool) {
	var now time.Time // for tiered rules only
	for i := range vs {
		v := &vs[i]
		if v.ovr.set {
			// The override replaces the rule tree for this descriptor,
			// whether or not a rule matches: never shadow, unlimited or
			// replaced, and it replaces nothing (as in envoyproxy/ratelimit).
			r, ok := rules.Override(domain, v.ovr.unit, v.ovr.requests)
			if !ok {
				continue
			}
			r.Limit.Period *= time.Duration(v.ovr.mult)
			v.ovrRule = r
			v.rule = &v.ovrRule
			v.kind = kindCounted
			v.limit, v.unit, v.mult = r.Limit, r.UnitCode, v.ovr.mult
			continue
		}
		r, ok := rules.Match(domain, v.desc)
		if !ok {
			continue
		}
		v.rule = r
		if len(r.Replaces) > 0 {
			replaces = true
		}
		if r.Unlimited {
			v.kind = kindUnlimited
			continue
		}
		v.kind = kindCounted
		v.shadow, v.quota = r.Shadow, r.Quota
		v.limit, v.unit = r.Limit, r.UnitCode
		if r.Tiers != nil {
			if now.IsZero() {
				now = time.Now()
			}
			res := r.ResolveRequest(v.desc, now, v.reqKey, v.reqTenant)
			v.limit, v.unit = res.Limit, res.Unit
		}
	}
	return replaces
}

// count encodes the key of every counted verdict, in request order, and
// counts them all with one Store.Take, or with one Take per chain when
// their rules route them to more than one (countRouted).
func (s *Server) count(ctx context.Context, mode limiter.Mode, sc *scratch) error {
	vs := sc.verdicts
	sc.key, sc.keyEnds = sc.key[:0], sc.keyEnds[:0]
	n, routed := 0, false
	for i := range vs {
		v := &vs[i]
		if v.kind != kindCounted {
			continue
		}
		routed = routed || v.rule.Chain != ""
		sc.key = descriptor.AppendCounterKey(sc.key, v.ns, v.rule, v.desc, v.limit)
		sc.keyEnds = append(sc.keyEnds, len(sc.key))
		v.req = n
		n++
	}
	if n == 0 {
		return nil
	}
	if routed {
		return s.countRouted(ctx, mode, sc, n)
	}
	s.fillRequests(sc, n)

	// One Take, whatever the count mode: a shadow rule that refuses does not
	// stop CountIfAllAllowed from counting the others (Request.Shadow).
	if err := s.store.Take(ctx, mode, sc.reqs, sc.res); err != nil {
		return err
	}
	sc.copyResults()
	return nil
}

// fillRequests builds the n requests of the counted verdicts from their
// keys (request i's key ends at sc.keyEnds[i]).
func (s *Server) fillRequests(sc *scratch, n int) {
	vs := sc.verdicts
	sc.reqs = resize(sc.reqs, n)
	sc.res = resize(sc.res, n)
	for i := range vs {
		v := &vs[i]
		if v.kind != kindCounted {
			continue
		}
		start := 0
		if v.req > 0 {
			start = sc.keyEnds[v.req-1]
		}
		sc.reqs[v.req] = limiter.Request{Key: bytesString(sc.key[start:sc.keyEnds[v.req]]), Limit: v.limit, Hits: v.hits, Shadow: v.shadow, Lease: v.rule.Lease}
	}
}

// copyResults copies each counted verdict's result from sc.res.
func (sc *scratch) copyResults() {
	for i := range sc.verdicts {
		if v := &sc.verdicts[i]; v.kind == kindCounted {
			v.result = sc.res[v.req]
		}
	}
}

// applyReplaces marks as replaced every counted descriptor whose rule
// descriptor.DropReplaced drops. Overrides neither replace nor are replaced.
func applyReplaces(vs []verdict, sc *scratch) {
	sc.matched = resize(sc.matched, len(vs))
	for i := range vs {
		sc.matched[i] = vs[i].rule
	}
	descriptor.DropReplaced(sc.matched)
	for i := range vs {
		if v := &vs[i]; v.kind == kindCounted && sc.matched[i] == nil {
			v.kind = kindReplaced
		}
	}
}

// bytesString returns b as a string without copying, which saves one
// allocation per counted descriptor. The key buffer is pooled and reused
// once the request is answered; limiter.Request documents that stores copy
// any key they keep, so the alias never outlives its use.
func bytesString(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
