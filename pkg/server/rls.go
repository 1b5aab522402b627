package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
)

// ShouldRateLimit implements Envoy's RateLimitService:
//
//   - each descriptor is matched on its own; the answer is OVER_LIMIT when
//     any non-shadow descriptor is over its limit;
//   - every descriptor gets a DescriptorStatus, in request order;
//   - hits_addend 0 means 1; a descriptor's own hits_addend overrides it
//     (0 there only reads the counter);
//   - a descriptor's limit override replaces its rule's limit, and applies
//     even when no rule matches (as in envoyproxy/ratelimit);
//   - unmatched descriptors, unknown domains, unlimited and replaced rules
//     answer OK and count nothing;
//   - an empty domain, no descriptors, a descriptor without entries or an
//     entry without key, and requests beyond Settings.Bounds answer
//     InvalidArgument;
//   - a store failure answers according to the domain's failure mode
//     (Settings.Failure): UNAVAILABLE, OK or OVER_LIMIT.
func (s *Server) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	return s.rateLimit(ctx, apiRateLimit, req)
}

// rateLimit is ShouldRateLimit, its request metrics recorded under api
// (the gRPC API's, or POST /json's: one decision, two protocols).
func (s *Server) rateLimit(ctx context.Context, api apiID, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	start := time.Now()
	lv := s.live.Load()
	sc := getScratch()
	resp, code, err := s.shouldRateLimit(ctx, lv, api, req, sc)
	putScratch(sc)
	s.observe(lv, api, req.GetDomain(), code, start)
	if s.traced {
		traceDecision(ctx, lv, req.GetDomain(), len(req.GetDescriptors()), code)
	}
	return resp, err
}

// observe records the metrics of a request of api: a RateLimitService,
// Decide (as apiRateLimit) or /json request.
func (s *Server) observe(lv *live, api apiID, domain string, code codeID, start time.Time) {
	if !lv.snap.rules.HasDomain(domain) {
		domain = unknownDomain
	}
	lv.cache.request(api, domain, code)
	s.metrics.observeDuration(api, code, time.Since(start).Seconds())
}

func (s *Server) shouldRateLimit(ctx context.Context, lv *live, api apiID, req *rlsv3.RateLimitRequest, sc *scratch) (*rlsv3.RateLimitResponse, codeID, error) {
	snap := lv.snap
	if err := readRequest(req, &snap.settings.Bounds, snap.rules.Identities(), sc); err != nil {
		return nil, codeInvalidArgument, status.Error(codes.InvalidArgument, err.Error())
	}
	domain := req.Domain
	_, code, err := s.decideVerdicts(ctx, lv, api, domain, sc)
	if err != nil {
		return nil, code, err
	}

	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK}
	resp.Statuses = descriptorStatuses(sc.verdicts)
	st := &snap.settings
	sc.headers = appendHeaders(sc.headers[:0], &st.Headers, sc.verdicts, code == codeOverLimit)
	if code == codeOverLimit {
		resp.OverallCode = rlsv3.RateLimitResponse_OVER_LIMIT
		if st.OverLimitBody {
			if resp.RawBody = overLimitBody(domain, sc.verdicts); resp.RawBody != nil {
				sc.headers = append(sc.headers, header{contentTypeHeader, jsonContentType})
			}
		}
	}
	resp.ResponseHeadersToAdd = headerValues(sc.headers)
	if st.UpstreamHeaders.Enabled {
		// The same headers, for the application behind Envoy; never
		// Retry-After, which is the client's.
		n := len(sc.headers)
		sc.headers = appendHeaders(sc.headers, &st.UpstreamHeaders, sc.verdicts, false)
		resp.RequestHeadersToAdd = headerValues(sc.headers[n:])
	}
	if st.Decisions.ResponseDynamicMetadata {
		resp.DynamicMetadata = dynamicMetadata(req, sc.verdicts)
	}
	return resp, code, nil
}

// decideVerdicts is the decision of every RateLimitService, /json and
// Decide request (api: whose metrics), whose verdicts sc holds
// (descriptor, hits, override): it
// matches and counts them (decide), answers a store failure by the
// domain's failure mode (storeFailed) and records each counted verdict's
// metric. It returns whether the failure mode answered, the request's code
// (codeOverLimit when the verdicts refuse the request, see refuses; codeOK
// instead under the server-wide shadow_mode) and, when there is no answer,
// the gRPC status error.
func (s *Server) decideVerdicts(ctx context.Context, lv *live, api apiID, domain string, sc *scratch) (failed bool, code codeID, err error) {
	snap := lv.snap
	if err := s.decide(ctx, snap, domain, sc); err != nil {
		code, err := s.storeFailed(ctx, api, snap, domain, err, sc)
		if err != nil {
			return false, code, err
		}
		failed = true
	}
	code = codeOK
	if refuses(sc.verdicts, snap.settings.Decisions.QuotaMode) {
		code = codeOverLimit
	}
	for i := range sc.verdicts {
		v := &sc.verdicts[i]
		if v.kind != kindCounted {
			continue
		}
		if !failed {
			// The counter keys are no longer needed: reuse their buffer.
			sc.key = s.countDecision(lv, v, &snap.settings, sc.key)
			s.recordInsight(snap, v, code == codeOverLimit)
		}
	}
	if code == codeOverLimit && s.log.Enabled(ctx, slog.LevelDebug) {
		// The limit's name, never the descriptor's values: they may be
		// secrets (an API key sent as a descriptor).
		v := &sc.verdicts[refusing(sc.verdicts)]
		s.log.DebugContext(ctx, "over limit", "api", apiNames[api], "domain", domain, "limit", policyName(v))
	}
	if code == codeOverLimit && snap.settings.Decisions.ShadowMode {
		s.metrics.shadowAnswers[api].Inc()
		code = codeOK
	}
	return failed, code, nil
}

// readRequest validates req against b and fills sc.entries and
// sc.verdicts (descriptor, hits and override of each descriptor). The
// value of every API key entry is replaced by its canonical form
// (canonicalKeys): nothing after ingress sees the key.
func readRequest(req *rlsv3.RateLimitRequest, b *descriptor.Bounds, ids descriptor.Identities, sc *scratch) error {
	switch {
	case req.GetDomain() == "":
		return errors.New("rate limit request has an empty domain")
	case len(req.GetDescriptors()) == 0:
		return errors.New("rate limit request has no descriptors")
	}
	if err := b.CheckRequest(len(req.Descriptors), uint64(req.HitsAddend)); err != nil {
		return err
	}
	hits := int64(max(1, req.HitsAddend))

	// Validate, and size the entries first: descriptors are views into one
	// array, which must not move while they are built.
	total := 0
	for i, pd := range req.Descriptors {
		es := pd.GetEntries()
		if len(es) == 0 {
			return fmt.Errorf("descriptor %d has no entries", i)
		}
		if err := b.CheckDescriptor(i, len(es), pd.GetHitsAddend().GetValue()); err != nil {
			return err
		}
		if pd.IsNegativeHits {
			return fmt.Errorf("descriptor %d: is_negative_hits is not supported", i)
		}
		for j, e := range es {
			if e.GetKey() == "" {
				return fmt.Errorf("descriptor %d entry %d has an empty key", i, j)
			}
			if err := b.CheckEntry(i, j, e.GetKey()); err != nil {
				return err
			}
		}
		total += len(es)
	}

	sc.entries = resize(sc.entries, total)[:0]
	sc.verdicts = resize(sc.verdicts, len(req.Descriptors))
	for i, pd := range req.Descriptors {
		start := len(sc.entries)
		for _, e := range pd.Entries {
			sc.entries = append(sc.entries, descriptor.Entry{Key: e.Key, Value: e.Value})
		}
		canonicalValues(ids, sc.entries[start:], b.ValueLength(), sc)
		v := &sc.verdicts[i]
		*v = verdict{desc: sc.entries[start:len(sc.entries):len(sc.entries)], hits: hits}
		if h := pd.HitsAddend; h != nil {
			v.hits = int64(h.Value) // at most MaxHitsAddend: checked above
		}
		if l := pd.Limit; l != nil {
			unit := descriptor.Unit(l.Unit)
			if !unit.Valid() {
				return fmt.Errorf("descriptor %d: limit override has unit %s, want one of SECOND, MINUTE, HOUR, DAY, MONTH, YEAR", i, l.Unit)
			}
			mult := uint32(1)
			if m := l.UnitMultiplier.GetValue(); m > 1 {
				if int64(m) > math.MaxInt64/int64(unit.Period()) {
					return fmt.Errorf("descriptor %d: limit override of %d %ss is too long", i, m, unit)
				}
				mult = m
			}
			v.ovr = override{set: true, requests: l.RequestsPerUnit, unit: unit, mult: mult}
		}
	}
	return nil
}

// canonicalValues is canonicalKeys, then every other value of es longer
// than maxBytes replaced by its hash (extract.BoundValue, as
// authz.max_value_bytes on Check): an over-long value is counted, never
// refused, since an error would let Envoy (failure_mode_deny: false) pass
// the request with none of its descriptors counted. API key values are
// already short (a listed id or a hash of the whole key, as on Check).
func canonicalValues(ids descriptor.Identities, es []descriptor.Entry, maxBytes int, sc *scratch) {
	canonicalKeys(ids, es, sc)
	if ids == nil {
		ids = (*extract.Identities)(nil)
	}
	keyKey := ids.APIKeyKey()
	for j := range es {
		if e := &es[j]; e.Key != keyKey {
			e.Value = extract.BoundValue(e.Value, maxBytes)
		}
	}
}

// canonicalKeys replaces the value of each API key entry of es (the raw key,
// as Envoy's request_headers action sends it) by its canonical form
// (descriptor.Identities.AppendKeyID): the listed key's id, matched by
// digest, or a hash. ids nil canonicalises with nothing listed. The forms
// are appended to sc.keyIDs and aliased, like the counter keys (see
// bytesString): a form already aliased is never written again during the
// request, even when the buffer grows.
func canonicalKeys(ids descriptor.Identities, es []descriptor.Entry, sc *scratch) {
	if ids == nil {
		ids = (*extract.Identities)(nil)
	}
	keyKey := ids.APIKeyKey()
	for j := range es {
		e := &es[j]
		if e.Key != keyKey {
			continue
		}
		if sc.now.IsZero() {
			sc.now = time.Now()
		}
		n := len(sc.keyIDs)
		sc.keyIDs = ids.AppendKeyID(sc.keyIDs, e.Value, sc.now)
		e.Value = bytesString(sc.keyIDs[n:])
	}
}

// statusBlock holds the messages of one DescriptorStatus, so that all
// statuses of a response are one allocation.
type statusBlock struct {
	status   rlsv3.RateLimitResponse_DescriptorStatus
	limit    rlsv3.RateLimitResponse_RateLimit
	duration durationpb.Duration
}

// descriptorStatuses builds one DescriptorStatus per verdict, in order.
// Unmatched and replaced descriptors get only code OK; unlimited ones OK
// with limit_remaining at its maximum (as envoyproxy/ratelimit); counted
// ones their limit, remaining and time to reset, and OVER_LIMIT when they
// refuse (never for a shadow rule).
func descriptorStatuses(vs []verdict) []*rlsv3.RateLimitResponse_DescriptorStatus {
	blocks := make([]statusBlock, len(vs))
	out := make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(vs))
	for i := range vs {
		v, b := &vs[i], &blocks[i]
		st := &b.status
		st.Code = rlsv3.RateLimitResponse_OK
		switch v.kind {
		case kindUnlimited:
			st.LimitRemaining = math.MaxUint32
		case kindCounted:
			if v.refused() {
				st.Code = rlsv3.RateLimitResponse_OVER_LIMIT
			}
			b.limit.Name = policyName(v)
			b.limit.RequestsPerUnit = clampUint32(v.limit.Requests)
			b.limit.Unit = rlsv3.RateLimitResponse_RateLimit_Unit(v.unit)
			if v.mult > 1 {
				b.limit.UnitMultiplier = wrapperspb.UInt32(v.mult)
			}
			st.CurrentLimit = &b.limit
			st.LimitRemaining = clampUint32(v.result.Remaining)
			d := max(0, v.result.ResetAfter)
			b.duration.Seconds = int64(d / time.Second)
			b.duration.Nanos = int32(d % time.Second)
			st.DurationUntilReset = &b.duration
		}
		out[i] = st
	}
	return out
}

// headerValues converts headers to the proto, in one allocation for the
// messages.
func headerValues(hs []header) []*corev3.HeaderValue {
	if len(hs) == 0 {
		return nil
	}
	vals := make([]corev3.HeaderValue, len(hs))
	out := make([]*corev3.HeaderValue, len(hs))
	for i, h := range hs {
		vals[i].Key, vals[i].Value = h.key, h.value
		out[i] = &vals[i]
	}
	return out
}

// countDecision records the metric of one counted verdict.
func (s *Server) countDecision(lv *live, v *verdict, st *Settings, buf []byte) []byte {
	o := outcomeOf(v, st.NearLimitRatio)
	r := v.rule
	switch {
	case r.Override:
		lv.cache.overrideDecision(r, o)
	case r.DetailedMetric || r.ValueToMetric:
		// Opted in to per-value series: the label holds request values, so
		// it is neither cached nor free.
		// AppendMetricKey returns valid UTF-8; should a label still be
		// refused, the decision stands and only its metric is lost.
		buf = descriptor.AppendMetricKey(buf[:0], r, v.desc)
		if c, err := lv.cache.m.decisions.GetMetricWithLabelValues(r.Domain, string(buf), outcomeNames[o]); err == nil {
			c.Inc()
		}
	default:
		lv.cache.decision(r, o)
	}
	return buf
}

// outcomeOf classifies a counted verdict for metrics.
func outcomeOf(v *verdict, nearRatio float64) outcomeID {
	switch {
	case !v.result.Allowed && v.shadow:
		return outcomeShadow
	case !v.result.Allowed:
		return outcomeOverLimit
	}
	c := v.limit.Capacity()
	if c > 0 && float64(c-v.result.Remaining) >= nearRatio*float64(c) {
		return outcomeNearLimit
	}
	return outcomeOK
}
