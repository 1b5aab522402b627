package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"golang.org/x/net/http/httpguts"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/pkg/extract"
)

// AuthzSettings configure the ext_authz Check API. Zero values are the
// documented defaults.
type AuthzSettings struct {
	// Extractor turns a request into the descriptors of its domain.
	// Required.
	Extractor *extract.Extractor
	// TenantHeader, TierHeader and APIKeyIDHeader name the upstream request
	// headers that carry the resolved tenant, tier and API key id (never
	// the key). Each is set, overwriting a client's copy, or removed when
	// the request has no such value. "" sends nothing.
	TenantHeader   string
	TierHeader     string
	APIKeyIDHeader string
	// DynamicMetadata also returns the tenant, tier and api_key_id in
	// CheckResponse.dynamic_metadata (namespace envoy.filters.http.ext_authz),
	// for later filters such as the rate limit filter's metadata actions.
	DynamicMetadata bool
	// Now returns the current time, for the expiry of listed API keys,
	// tenants and overrides (default time.Now).
	Now func() time.Time
}

// validate returns st with its defaults filled in, or why Check cannot use
// it (Settings.withDefaults calls it for Settings.Authz).
func (st AuthzSettings) validate() (AuthzSettings, error) {
	if st.Extractor == nil {
		return st, errors.New("server: authz without an extractor")
	}
	for _, h := range []string{st.TenantHeader, st.TierHeader, st.APIKeyIDHeader} {
		if h != "" && !httpguts.ValidHeaderFieldName(h) {
			return st, fmt.Errorf("server: authz upstream header %q is not a valid HTTP field name", h)
		}
	}
	if st.Now == nil {
		st.Now = time.Now
	}
	return st, nil
}

// Authz answers Envoy's ext_authz Check (envoy.service.auth.v3) on the
// same rules, store, decision code, headers and metrics as the Server it
// wraps: the extractor turns the HTTP request into descriptors, which are
// decided like a RateLimitService request with hits 1. Its settings
// (extractor, upstream headers) are the Authz field of the Server's
// current Snapshot, so a reload (Server.Swap) changes rules, extractor and
// headers together: each Check reads the snapshot once and never pairs one
// snapshot's extractor with another's rules. It is safe for concurrent use.
type Authz struct {
	authv3.UnimplementedAuthorizationServer

	srv *Server
}

var _ authv3.AuthorizationServer = (*Authz)(nil)

// errNoAuthz answers a Check when the current snapshot has no Authz
// settings (a Server.Swap to a snapshot without them; serve refuses such a
// reload).
var errNoAuthz = errors.New("server: the current snapshot has no authz settings")

// NewAuthz returns the Check handler over srv, whose current snapshot must
// carry Authz settings (Settings.Authz).
func NewAuthz(srv *Server) (*Authz, error) {
	if srv == nil {
		return nil, errors.New("server: authz without a server")
	}
	if srv.Snapshot().settings.Authz == nil {
		return nil, errNoAuthz
	}
	return &Authz{srv: srv}, nil
}

// Register registers the Authorization service on g.
func (a *Authz) Register(g *grpc.Server) {
	authv3.RegisterAuthorizationServer(g, a)
}

// authzScratch is the per-call working memory of Check, pooled with the
// same reasoning as scratch.
type authzScratch struct {
	req     extract.Request
	ext     extract.Extraction
	headers map[string]string // for requests that carry header_map
}

var authzPool = sync.Pool{New: func() any { return new(authzScratch) }}

func putAuthzScratch(ax *authzScratch) {
	ax.req = extract.Request{}
	ax.ext.Reset()
	clear(ax.headers)
	authzPool.Put(ax)
}

// Check implements ext_authz:
//
//   - the extractor builds the descriptors (skipping those whose source is
//     missing); an entry whose missing policy is deny answers
//     DeniedHttpResponse with its status and a small JSON body;
//   - each descriptor is decided as ShouldRateLimit decides it (hits 1),
//     except that the request's listed API key and tenant also apply their
//     tiers and overrides to descriptors that do not carry them, and that,
//     unless tenants share counters, a request with a tenant counts on
//     counters of its own;
//   - allowed: OK, with the rate-limit headers in
//     OkHttpResponse.response_headers_to_add and the upstream headers;
//   - over limit: DeniedHttpResponse 429 with the same headers, Retry-After
//     and a JSON body naming the limit;
//   - a store failure follows the domain's failure mode: UNAVAILABLE (so
//     Envoy's failure_mode_allow decides), OK, or 429.
func (a *Authz) Check(ctx context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	s := a.srv
	lv := s.live.Load() // the one read of the snapshot: rules, extractor and headers of one config
	st := lv.snap.settings.Authz
	if st == nil {
		return nil, status.Error(codes.FailedPrecondition, errNoAuthz.Error())
	}
	sc := getScratch()
	ax := authzPool.Get().(*authzScratch)
	resp, code, err := a.check(ctx, lv, st, req, sc, ax)
	descriptors := len(ax.ext.Descriptors)
	putAuthzScratch(ax)
	putScratch(sc)

	domain := st.Extractor.Domain()
	if s.traced {
		traceDecision(ctx, lv, domain, descriptors, code)
	}
	if !lv.snap.rules.HasDomain(domain) {
		domain = unknownDomain
	}
	lv.cache.request(apiAuthz, domain, code)
	s.metrics.observeDuration(apiAuthz, code, time.Since(start).Seconds())
	return resp, err
}

func (a *Authz) check(ctx context.Context, lv *live, st *AuthzSettings, req *authv3.CheckRequest, sc *scratch, ax *authzScratch) (*authv3.CheckResponse, codeID, error) {
	s, snap := a.srv, lv.snap
	x := st.Extractor
	readCheckRequest(req, x, ax)
	x.Extract(&ax.req, st.Now(), &ax.ext)
	ext := &ax.ext
	if ext.Denied {
		// A missing source, not a limit: reported as invalid_argument.
		return missingSourceResponse(ext), codeInvalidArgument, nil
	}

	domain := x.Domain()
	ns := ext.Namespace // an authenticated tenant's, unless tenants share counters
	sc.verdicts = resize(sc.verdicts, len(ext.Descriptors))
	for i, d := range ext.Descriptors {
		sc.verdicts[i] = verdict{desc: d, hits: 1, ns: ns, reqKey: ext.APIKey.Listing(), reqTenant: ext.TenantIdentity.Listing()}
	}
	decided := true
	if len(sc.verdicts) > 0 {
		if err := s.decide(ctx, snap, domain, sc); err != nil {
			code, err := s.storeFailed(ctx, apiAuthz, snap, domain, err, sc)
			if err != nil {
				return nil, code, err
			}
			decided = false // answered by the failure mode
		}
	}
	refused := refuses(sc.verdicts, snap.settings.Decisions.QuotaMode)
	for i := range sc.verdicts {
		v := &sc.verdicts[i]
		if v.kind != kindCounted {
			continue
		}
		if decided {
			sc.key = s.countDecision(lv, v, &snap.settings, sc.key)
			s.recordInsight(snap, v, refused)
		}
	}
	if refused && snap.settings.Decisions.ShadowMode {
		s.metrics.shadowAnswers[apiAuthz].Inc()
		refused = false
	}
	sc.headers = appendHeaders(sc.headers[:0], &snap.settings.Headers, sc.verdicts, refused)
	if refused {
		return overLimitResponse(domain, sc), codeOverLimit, nil
	}
	return allowedResponse(st, ext, sc.headers), codeOK, nil
}

// readCheckRequest fills ax.req from req without copying strings: Envoy's
// path carries the query string; headers come from the headers map, or,
// when Envoy sends header_map (encode_raw_headers), only the headers the
// extractor reads are copied.
func readCheckRequest(req *authv3.CheckRequest, x *extract.Extractor, ax *authzScratch) {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	r := &ax.req
	r.Method, r.Host, r.Headers = h.GetMethod(), h.GetHost(), h.GetHeaders()
	r.SetPathQuery(h.GetPath())
	if r.Query == "" {
		r.Query = h.GetQuery() // documented as always empty; used if set
	}
	if r.Headers == nil && h.GetHeaderMap() != nil {
		r.Headers = selectHeaders(h.GetHeaderMap(), x.HeaderNames(), ax)
	}
	if sa := attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil {
		if addr, err := netip.ParseAddr(sa.GetAddress()); err == nil {
			r.Peer = addr
		}
	}
}

// selectHeaders copies from hm the headers named in names (lower case),
// joining repeated ones with "," as Envoy's headers map does.
func selectHeaders(hm *corev3.HeaderMap, names []string, ax *authzScratch) map[string]string {
	if ax.headers == nil {
		ax.headers = make(map[string]string, len(names))
	}
	for _, hv := range hm.GetHeaders() {
		k := hv.GetKey()
		wanted := false
		for _, n := range names {
			if strings.EqualFold(k, n) {
				k, wanted = n, true
				break
			}
		}
		if !wanted {
			continue
		}
		v := hv.GetValue()
		if v == "" && len(hv.GetRawValue()) > 0 {
			v = string(hv.GetRawValue())
		}
		if prev, ok := ax.headers[k]; ok {
			v = prev + "," + v
		}
		ax.headers[k] = v
	}
	return ax.headers
}

// headerOptions converts headers to HeaderValueOptions that overwrite any
// header of the same name, in two allocations for the messages.
func headerOptions(hs []header) []*corev3.HeaderValueOption {
	if len(hs) == 0 {
		return nil
	}
	vals := make([]corev3.HeaderValue, len(hs))
	opts := make([]corev3.HeaderValueOption, len(hs))
	out := make([]*corev3.HeaderValueOption, len(hs))
	for i, h := range hs {
		vals[i].Key, vals[i].Value = h.key, h.value
		opts[i].Header = &vals[i]
		opts[i].AppendAction = corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD
		out[i] = &opts[i]
	}
	return out
}

// allowedResponse is the OK answer: rate-limit headers for the client, the
// resolved identity for the upstream.
func allowedResponse(st *AuthzSettings, ext *extract.Extraction, hs []header) *authv3.CheckResponse {
	ok := &authv3.OkHttpResponse{ResponseHeadersToAdd: headerOptions(hs)}
	var up [3]header
	n := 0
	for _, f := range [...]struct{ name, value string }{
		{st.TenantHeader, ext.Tenant}, {st.TierHeader, ext.Tier}, {st.APIKeyIDHeader, ext.APIKeyID},
	} {
		switch {
		case f.name == "":
		case f.value != "":
			up[n] = header{f.name, f.value}
			n++
		default:
			// Never let a client supply what only Check may assert.
			ok.HeadersToRemove = append(ok.HeadersToRemove, f.name)
		}
	}
	ok.Headers = headerOptions(up[:n])
	resp := &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: ok},
	}
	if st.DynamicMetadata {
		resp.DynamicMetadata = identityMetadata(ext)
	}
	return resp
}

// identityMetadata is the request's resolved identity as dynamic metadata.
func identityMetadata(ext *extract.Extraction) *structpb.Struct {
	fields := make(map[string]*structpb.Value, 3)
	for _, f := range [...]struct{ k, v string }{{"tenant", ext.Tenant}, {"tier", ext.Tier}, {"api_key_id", ext.APIKeyID}} {
		if f.v != "" {
			fields[f.k] = structpb.NewStringValue(f.v)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	return &structpb.Struct{Fields: fields}
}

// overLimitResponse is the 429 answer: the rate-limit headers, Retry-After
// (even when the rate-limit headers are off) and a JSON body naming the
// refusing limit.
func overLimitResponse(domain string, sc *scratch) *authv3.CheckResponse {
	hasRetry := false
	for _, h := range sc.headers {
		hasRetry = hasRetry || h.key == retryAfterHeader
	}
	if i := refusing(sc.verdicts); i >= 0 && !hasRetry {
		sc.headers = append(sc.headers, header{retryAfterHeader, strconv.FormatInt(retryAfterSeconds(sc.verdicts[i].result.RetryAfter), 10)})
	}
	body := overLimitBody(domain, sc.verdicts)
	if body != nil {
		sc.headers = append(sc.headers, header{contentTypeHeader, jsonContentType})
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(codes.ResourceExhausted), Message: "over rate limit"},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode_TooManyRequests},
			Headers: headerOptions(sc.headers),
			Body:    string(body),
		}},
	}
}

// missingSourceResponse is the answer when an entry with missing: deny
// found no value: its status and {"code":"missing_source","reason":...}.
// The reason names the descriptor and entry, never request data.
func missingSourceResponse(ext *extract.Extraction) *authv3.CheckResponse {
	body, err := json.Marshal(struct {
		Code   string `json:"code"`
		Reason string `json:"reason"`
	}{Code: "missing_source", Reason: ext.DenyReason})
	if err != nil {
		body = nil // unreachable: two strings
	}
	// Envoy denies on any non-OK code; pick the closest for logs.
	code := codes.PermissionDenied
	switch ext.DenyStatus {
	case 400:
		code = codes.InvalidArgument
	case 401:
		code = codes.Unauthenticated
	case 429:
		code = codes.ResourceExhausted
	}
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code), Message: ext.DenyReason},
		HttpResponse: &authv3.CheckResponse_DeniedResponse{DeniedResponse: &authv3.DeniedHttpResponse{
			Status:  &typev3.HttpStatus{Code: typev3.StatusCode(ext.DenyStatus)},
			Headers: headerOptions([]header{{contentTypeHeader, jsonContentType}}),
			Body:    string(body),
		}},
	}
}
