package envoycheck

//lint:file-ignore SA1019 Envoy still accepts the deprecated HeaderMatcher match fields, so the checker must evaluate configs that use them.

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	metadatav3 "github.com/envoyproxy/go-control-plane/envoy/type/metadata/v3"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// ErrUnsupported is returned for actions and matchers that envoycheck cannot
// evaluate offline (CEL extensions, custom matchers, route metadata, ...).
var ErrUnsupported = errors.New("not supported by envoycheck")

// Request is what one HTTP request offers to rate_limits actions.
type Request struct {
	// Name identifies the request in messages.
	Name string
	// RemoteAddr is the trusted client address (remote_address,
	// masked_remote_address).
	RemoteAddr netip.Addr
	// Method, Path (with the query string) and Authority are the
	// :method, :path and :authority pseudo-headers.
	Method, Path, Authority string
	// Headers holds the other request headers, by lower-case name.
	Headers map[string]string
	// SourceCluster is Envoy's --service-cluster (source_cluster).
	SourceCluster string
	// Metadata is the dynamic metadata: filter namespace → structure of
	// map[string]any and string leaves (metadata actions with source DYNAMIC).
	Metadata map[string]map[string]any
}

func (r *Request) header(name string) (string, bool) {
	switch name = strings.ToLower(name); name {
	case ":path":
		return r.Path, r.Path != ""
	case ":method":
		return r.Method, r.Method != ""
	case ":authority", "host":
		return r.Authority, r.Authority != ""
	}
	v, ok := r.Headers[name]
	return v, ok
}

func (r *Request) setHeader(name, value string) {
	switch name = strings.ToLower(name); name {
	case ":path":
		r.Path = value
	case ":method":
		r.Method = value
	case ":authority", "host":
		r.Authority = value
	default:
		if r.Headers == nil {
			r.Headers = map[string]string{}
		}
		r.Headers[name] = value
	}
}

func (r *Request) query(name string) (string, bool) {
	_, q, ok := strings.Cut(r.Path, "?")
	if !ok {
		return "", false
	}
	vs, err := url.ParseQuery(q)
	if err != nil || len(vs[name]) == 0 {
		return "", false
	}
	return vs[name][0], true
}

func (r *Request) addQuery(name, value string) {
	sep := "?"
	if strings.Contains(r.Path, "?") {
		sep = "&"
	}
	if r.Path == "" {
		r.Path = "/"
	}
	r.Path += sep + url.QueryEscape(name) + "=" + url.QueryEscape(value)
}

func (r *Request) metadata(k *metadataKey) (string, bool) {
	var v any = r.Metadata[k.ns]
	if r.Metadata[k.ns] == nil {
		return "", false
	}
	for _, p := range k.path {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		v = m[p]
	}
	s, ok := v.(string)
	return s, ok && s != ""
}

func (r *Request) setMetadata(k *metadataKey, value string) {
	if r.Metadata == nil {
		r.Metadata = map[string]map[string]any{}
	}
	m := r.Metadata[k.ns]
	if m == nil {
		m = map[string]any{}
		r.Metadata[k.ns] = m
	}
	for i, p := range k.path {
		if i == len(k.path)-1 {
			m[p] = value
			return
		}
		next, ok := m[p].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[p] = next
		}
		m = next
	}
}

type metadataKey struct {
	ns   string
	path []string
}

// Descriptor returns the descriptor that Envoy builds from rl's actions for
// req on a route to cluster, and false when Envoy would send none (an action
// produced no entry and was not allowed to skip it, or no entry at all was
// produced). Entries come out in action order.
func Descriptor(rl *routev3.RateLimit, cluster string, req *Request) (descriptor.Descriptor, bool, error) {
	var d descriptor.Descriptor
	for i, a := range rl.GetActions() {
		e, produced, skip, err := entry(a, cluster, req)
		if err != nil {
			return nil, false, fmt.Errorf("actions[%d]: %w", i, err)
		}
		switch {
		case produced:
			d = append(d, e)
		case !skip:
			return nil, false, nil
		}
	}
	return d, len(d) > 0, nil
}

// entry evaluates one action: the entry it appends, or skip (no entry, but
// the descriptor continues), or neither (no descriptor).
func entry(a *routev3.RateLimit_Action, cluster string, req *Request) (e descriptor.Entry, produced, skip bool, err error) {
	switch x := a.GetActionSpecifier().(type) {
	case *routev3.RateLimit_Action_SourceCluster_:
		return descriptor.Entry{Key: "source_cluster", Value: req.SourceCluster}, true, false, nil
	case *routev3.RateLimit_Action_DestinationCluster_:
		if cluster == "" {
			return e, false, false, fmt.Errorf("destination_cluster on a route without a fixed cluster: %w", ErrUnsupported)
		}
		return descriptor.Entry{Key: "destination_cluster", Value: cluster}, true, false, nil
	case *routev3.RateLimit_Action_RequestHeaders_:
		h := x.RequestHeaders
		v, ok := req.header(h.GetHeaderName())
		return lookedUp(h.GetDescriptorKey(), v, ok, h.GetSkipIfAbsent())
	case *routev3.RateLimit_Action_QueryParameters_:
		q := x.QueryParameters
		v, ok := req.query(q.GetQueryParameterName())
		return lookedUp(q.GetDescriptorKey(), v, ok, q.GetSkipIfAbsent())
	case *routev3.RateLimit_Action_RemoteAddress_:
		if !req.RemoteAddr.IsValid() {
			return e, false, false, nil
		}
		return descriptor.Entry{Key: "remote_address", Value: req.RemoteAddr.String()}, true, false, nil
	case *routev3.RateLimit_Action_MaskedRemoteAddress_:
		return maskedRemoteAddress(x.MaskedRemoteAddress, req)
	case *routev3.RateLimit_Action_GenericKey_:
		g := x.GenericKey
		if strings.Contains(g.GetDescriptorValue(), "%") {
			return e, false, false, fmt.Errorf("generic_key with a formatter in %q: %w", g.GetDescriptorValue(), ErrUnsupported)
		}
		return descriptor.Entry{Key: orDefault(g.GetDescriptorKey(), "generic_key"), Value: g.GetDescriptorValue()}, true, false, nil
	case *routev3.RateLimit_Action_HeaderValueMatch_:
		return headerValueMatch(x.HeaderValueMatch, req)
	case *routev3.RateLimit_Action_QueryParameterValueMatch_:
		return queryParameterValueMatch(x.QueryParameterValueMatch, req)
	case *routev3.RateLimit_Action_Metadata:
		return metadataEntry(x.Metadata, req)
	default:
		return e, false, false, fmt.Errorf("action %T: %w", x, ErrUnsupported)
	}
}

// lookedUp is the result of a request_headers or query_parameters action
// whose lookup found v (ok) or nothing.
func lookedUp(key, v string, ok, skipIfAbsent bool) (e descriptor.Entry, produced, skip bool, err error) {
	if !ok {
		return e, false, skipIfAbsent, nil
	}
	return descriptor.Entry{Key: key, Value: v}, true, false, nil
}

// metadataEntry evaluates a metadata action (dynamic metadata only).
func metadataEntry(m *routev3.RateLimit_Action_MetaData, req *Request) (e descriptor.Entry, produced, skip bool, err error) {
	if m.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC {
		return e, false, false, fmt.Errorf("metadata source %s: %w", m.GetSource(), ErrUnsupported)
	}
	v, ok := req.metadata(keyOf(m.GetMetadataKey()))
	if !ok {
		if m.GetDefaultValue() != "" {
			return descriptor.Entry{Key: m.GetDescriptorKey(), Value: m.GetDefaultValue()}, true, false, nil
		}
		return e, false, m.GetSkipIfAbsent(), nil
	}
	return descriptor.Entry{Key: m.GetDescriptorKey(), Value: v}, true, false, nil
}

// maskedRemoteAddress evaluates a masked_remote_address action: the client
// address's prefix (/32 or /128 unless the action sets the length).
func maskedRemoteAddress(m *routev3.RateLimit_Action_MaskedRemoteAddress, req *Request) (e descriptor.Entry, produced, skip bool, err error) {
	if !req.RemoteAddr.IsValid() {
		return e, false, false, nil
	}
	bits := 32
	if req.RemoteAddr.Is4() {
		if v := m.GetV4PrefixMaskLen(); v != nil {
			bits = int(v.GetValue())
		}
	} else {
		bits = 128
		if v := m.GetV6PrefixMaskLen(); v != nil {
			bits = int(v.GetValue())
		}
	}
	p, perr := req.RemoteAddr.Prefix(bits)
	if perr != nil {
		return e, false, false, fmt.Errorf("masked_remote_address: %w", perr)
	}
	return descriptor.Entry{Key: "masked_remote_address", Value: p.String()}, true, false, nil
}

// headerValueMatch evaluates a header_value_match action: an entry when
// every header matcher matches (or, with expect_match false, when not all do).
func headerValueMatch(h *routev3.RateLimit_Action_HeaderValueMatch, req *Request) (e descriptor.Entry, produced, skip bool, err error) {
	matched := true
	for _, hm := range h.GetHeaders() {
		ok, merr := matchHeader(hm, req)
		if merr != nil {
			return e, false, false, fmt.Errorf("header_value_match: %w", merr)
		}
		matched = matched && ok
	}
	want := h.GetExpectMatch() == nil || h.GetExpectMatch().GetValue()
	if matched != want {
		return e, false, false, nil
	}
	return descriptor.Entry{Key: orDefault(h.GetDescriptorKey(), "header_match"), Value: h.GetDescriptorValue()}, true, false, nil
}

// queryParameterValueMatch evaluates a query_parameter_value_match action,
// as headerValueMatch does for headers.
func queryParameterValueMatch(q *routev3.RateLimit_Action_QueryParameterValueMatch, req *Request) (e descriptor.Entry, produced, skip bool, err error) {
	matched := true
	for _, qm := range q.GetQueryParameters() {
		ok, merr := matchQuery(qm, req)
		if merr != nil {
			return e, false, false, fmt.Errorf("query_parameter_value_match: %w", merr)
		}
		matched = matched && ok
	}
	want := q.GetExpectMatch() == nil || q.GetExpectMatch().GetValue()
	if matched != want {
		return e, false, false, nil
	}
	return descriptor.Entry{Key: orDefault(q.GetDescriptorKey(), "query_match"), Value: q.GetDescriptorValue()}, true, false, nil
}

func keyOf(k *metadatav3.MetadataKey) *metadataKey {
	mk := &metadataKey{ns: k.GetKey()}
	for _, p := range k.GetPath() {
		mk.path = append(mk.path, p.GetKey())
	}
	return mk
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// matchHeader evaluates one HeaderMatcher the way Envoy's HeaderUtility
// does: a missing header matches only an inverted present_match: true or a
// present_match: false (unless treat_missing_header_as_empty).
func matchHeader(hm *routev3.HeaderMatcher, req *Request) (bool, error) {
	v, ok := req.header(hm.GetName())
	if !ok && hm.GetTreatMissingHeaderAsEmpty() {
		v, ok = "", true
	}
	if !ok {
		if p, isPresent := hm.GetHeaderMatchSpecifier().(*routev3.HeaderMatcher_PresentMatch); isPresent {
			return p.PresentMatch == hm.GetInvertMatch(), nil
		}
		return false, nil
	}
	var m bool
	switch x := hm.GetHeaderMatchSpecifier().(type) {
	case nil:
		m = true
	case *routev3.HeaderMatcher_PresentMatch:
		m = x.PresentMatch
	case *routev3.HeaderMatcher_ExactMatch:
		m = v == x.ExactMatch
	case *routev3.HeaderMatcher_PrefixMatch:
		m = strings.HasPrefix(v, x.PrefixMatch)
	case *routev3.HeaderMatcher_SuffixMatch:
		m = strings.HasSuffix(v, x.SuffixMatch)
	case *routev3.HeaderMatcher_ContainsMatch:
		m = strings.Contains(v, x.ContainsMatch)
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := regexp.Compile(`^(?:` + x.SafeRegexMatch.GetRegex() + `)$`)
		if err != nil {
			return false, fmt.Errorf("header %q: %w", hm.GetName(), err)
		}
		m = re.MatchString(v)
	case *routev3.HeaderMatcher_RangeMatch:
		n, err := strconv.ParseInt(v, 10, 64)
		m = err == nil && n >= x.RangeMatch.GetStart() && n < x.RangeMatch.GetEnd()
	case *routev3.HeaderMatcher_StringMatch:
		var err error
		if m, err = matchString(x.StringMatch, v); err != nil {
			return false, fmt.Errorf("header %q: %w", hm.GetName(), err)
		}
	default:
		return false, fmt.Errorf("header matcher %T: %w", x, ErrUnsupported)
	}
	return m != hm.GetInvertMatch(), nil
}

func matchQuery(qm *routev3.QueryParameterMatcher, req *Request) (bool, error) {
	v, ok := req.query(qm.GetName())
	if !ok {
		return false, nil
	}
	switch x := qm.GetQueryParameterMatchSpecifier().(type) {
	case nil:
		return true, nil
	case *routev3.QueryParameterMatcher_PresentMatch:
		return x.PresentMatch, nil
	case *routev3.QueryParameterMatcher_StringMatch:
		return matchString(x.StringMatch, v)
	default:
		return false, fmt.Errorf("query parameter matcher %T: %w", x, ErrUnsupported)
	}
}

func matchString(sm *matcherv3.StringMatcher, v string) (bool, error) {
	fold := func(s string) string {
		if sm.GetIgnoreCase() {
			return strings.ToLower(s)
		}
		return s
	}
	switch x := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return fold(v) == fold(x.Exact), nil
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(fold(v), fold(x.Prefix)), nil
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(fold(v), fold(x.Suffix)), nil
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(fold(v), fold(x.Contains)), nil
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile(`^(?:` + x.SafeRegex.GetRegex() + `)$`)
		if err != nil {
			return false, err
		}
		return re.MatchString(v), nil
	default:
		return false, fmt.Errorf("string matcher %T: %w", x, ErrUnsupported)
	}
}

// Synthesize returns a request that Envoy routes to p's route and for which
// every action of p produces an entry, with made-up values ("sample-<descriptor
// key>") for headers, query parameters and metadata, and 203.0.113.10 as the
// client address. It lets a check reach every rate_limits entry without
// hand-written requests. It fails when it cannot invent the input (regular
// expressions, CEL, a route that an earlier one shadows, ...).
func Synthesize(p Policy) (*Request, error) {
	req := &Request{
		Name:          "synthesized",
		RemoteAddr:    netip.MustParseAddr("203.0.113.10"),
		Method:        "GET",
		Path:          "/",
		Authority:     "example.com",
		SourceCluster: "envoy",
	}
	if p.route != nil {
		routeTo(req, p.vhost, p.route)
	}
	for i, a := range p.RateLimit.GetActions() {
		switch x := a.GetActionSpecifier().(type) {
		case *routev3.RateLimit_Action_RequestHeaders_:
			req.setHeader(x.RequestHeaders.GetHeaderName(), "sample-"+x.RequestHeaders.GetDescriptorKey())
		case *routev3.RateLimit_Action_QueryParameters_:
			req.addQuery(x.QueryParameters.GetQueryParameterName(), "sample-"+x.QueryParameters.GetDescriptorKey())
		case *routev3.RateLimit_Action_Metadata:
			req.setMetadata(keyOf(x.Metadata.GetMetadataKey()), "sample-"+x.Metadata.GetDescriptorKey())
		case *routev3.RateLimit_Action_HeaderValueMatch_:
			if x.HeaderValueMatch.GetExpectMatch() != nil && !x.HeaderValueMatch.GetExpectMatch().GetValue() {
				continue // the headers stay absent, which matches nothing
			}
			for _, hm := range x.HeaderValueMatch.GetHeaders() {
				v, ok := satisfying(hm)
				if !ok {
					return nil, fmt.Errorf("actions[%d]: cannot invent a value for header %q: give an explicit request",
						i, hm.GetName())
				}
				if v != nil {
					req.setHeader(hm.GetName(), *v)
				}
			}
		case *routev3.RateLimit_Action_QueryParameterValueMatch_:
			if x.QueryParameterValueMatch.GetExpectMatch() != nil && !x.QueryParameterValueMatch.GetExpectMatch().GetValue() {
				continue
			}
			for _, qm := range x.QueryParameterValueMatch.GetQueryParameters() {
				v := "present"
				if sm := qm.GetStringMatch(); sm != nil {
					s, ok := satisfyingString(sm)
					if !ok {
						return nil, fmt.Errorf("actions[%d]: cannot invent a value for query parameter %q: give an explicit request",
							i, qm.GetName())
					}
					v = s
				}
				req.addQuery(qm.GetName(), v)
			}
		}
	}
	if _, ok, err := Descriptor(p.RateLimit, p.Cluster, req); err != nil {
		return nil, err
	} else if !ok {
		return nil, errors.New("the synthesized request produces no descriptor: give an explicit request")
	}
	if p.table != nil {
		if ok, err := p.Serves(req); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("the synthesized request %s %s (host %q) is not routed to %s: give an explicit request",
				req.Method, req.Path, req.Authority, p.Route)
		}
	}
	return req, nil
}

// satisfying returns a header value that hm matches; nil means "leave the
// header absent".
func satisfying(hm *routev3.HeaderMatcher) (*string, bool) {
	s := func(v string) (*string, bool) { return &v, true }
	if hm.GetInvertMatch() {
		switch x := hm.GetHeaderMatchSpecifier().(type) {
		case *routev3.HeaderMatcher_PresentMatch:
			if x.PresentMatch {
				return nil, true
			}
			return s("present")
		default:
			return s("\x01no-match\x01") // matches no sane exact/prefix/suffix/contains pattern
		}
	}
	switch x := hm.GetHeaderMatchSpecifier().(type) {
	case nil:
		return s("present")
	case *routev3.HeaderMatcher_PresentMatch:
		if !x.PresentMatch {
			return nil, true
		}
		return s("present")
	case *routev3.HeaderMatcher_ExactMatch:
		return s(x.ExactMatch)
	case *routev3.HeaderMatcher_PrefixMatch:
		return s(x.PrefixMatch + "sample")
	case *routev3.HeaderMatcher_SuffixMatch:
		return s("sample" + x.SuffixMatch)
	case *routev3.HeaderMatcher_ContainsMatch:
		return s("sample" + x.ContainsMatch + "sample")
	case *routev3.HeaderMatcher_RangeMatch:
		return s(strconv.FormatInt(x.RangeMatch.GetStart(), 10))
	case *routev3.HeaderMatcher_StringMatch:
		v, ok := satisfyingString(x.StringMatch)
		if !ok {
			return nil, false
		}
		return s(v)
	}
	return nil, false
}

func satisfyingString(sm *matcherv3.StringMatcher) (string, bool) {
	switch x := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return x.Exact, true
	case *matcherv3.StringMatcher_Prefix:
		return x.Prefix + "sample", true
	case *matcherv3.StringMatcher_Suffix:
		return "sample" + x.Suffix, true
	case *matcherv3.StringMatcher_Contains:
		return "sample" + x.Contains + "sample", true
	}
	return "", false
}
