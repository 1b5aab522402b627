package server

import (
	"strconv"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

// dynamicMetadata is RateLimitResponse.dynamic_metadata under
// response_dynamic_metadata, in envoyproxy/ratelimit's shape, which Envoy
// stores under the filter's name (envoy.filters.http.ratelimit) for access
// logs and later filters:
//
//	domain:      the request's domain
//	descriptors: one struct per descriptor, in request order:
//	  entries:    ["key=value", ...]
//	  limit:      the descriptor's limit override, in protobuf text
//	              ("requests_per_unit:10 unit:MINUTE"), when it has one
//	  hitsAddend: the descriptor's hits_addend, when set
//	hitsAddend:  the request's hits_addend, when not 0
//	metadata:    the rule-file metadata of the descriptors that passed
//	             (not over their limit, nor unlimited), merged in request
//	             order, when any
//
// Merging keeps the first value of a key, except that two mappings under
// one key are merged in turn. Entries carry the values as extauthz counts
// them: an API key's canonical id or hash and an over-long value's hash,
// never the raw value. Only built when the setting is on.
func dynamicMetadata(req *rlsv3.RateLimitRequest, vs []verdict) *structpb.Struct {
	fields := map[string]*structpb.Value{"domain": structpb.NewStringValue(req.GetDomain())}
	ds := make([]*structpb.Value, 0, len(vs))
	var passed *structpb.Struct
	for i := range vs {
		v := &vs[i]
		pd := req.GetDescriptors()[i]
		d := map[string]*structpb.Value{"entries": structpb.NewListValue(entryList(v))}
		if l := pd.GetLimit(); l != nil {
			d["limit"] = structpb.NewStringValue(overrideText(l))
		}
		if h := pd.GetHitsAddend(); h != nil {
			d["hitsAddend"] = structpb.NewNumberValue(float64(h.GetValue()))
		}
		ds = append(ds, structpb.NewStructValue(&structpb.Struct{Fields: d}))
		if v.kind == kindCounted && !v.refused() && v.rule.Metadata != nil {
			if passed == nil {
				passed = &structpb.Struct{Fields: make(map[string]*structpb.Value)}
			}
			mergeMetadata(passed, v.rule.Metadata)
		}
	}
	fields["descriptors"] = structpb.NewListValue(&structpb.ListValue{Values: ds})
	if h := req.GetHitsAddend(); h != 0 {
		fields["hitsAddend"] = structpb.NewNumberValue(float64(h))
	}
	if len(passed.GetFields()) > 0 {
		fields["metadata"] = structpb.NewStructValue(passed)
	}
	return &structpb.Struct{Fields: fields}
}

// entryList is v's descriptor as "key=value" strings.
func entryList(v *verdict) *structpb.ListValue {
	l := &structpb.ListValue{Values: make([]*structpb.Value, len(v.desc))}
	for j, e := range v.desc {
		l.Values[j] = structpb.NewStringValue(e.Key + "=" + e.Value)
	}
	return l
}

// overrideText formats a limit override as protobuf text, as
// envoyproxy/ratelimit prints it (without the randomised spacing of Go's
// String methods).
func overrideText(l *ratelimitv3.RateLimitDescriptor_RateLimitOverride) string {
	b := make([]byte, 0, 64)
	if n := l.GetRequestsPerUnit(); n != 0 {
		b = append(b, "requests_per_unit:"...)
		b = strconv.AppendUint(b, uint64(n), 10)
	}
	if u := l.GetUnit(); u != 0 {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, "unit:"...)
		b = append(b, u.String()...)
	}
	if m := l.GetUnitMultiplier(); m != nil {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, "unit_multiplier:{"...)
		if mult := m.GetValue(); mult != 0 {
			b = append(b, "value:"...)
			b = strconv.AppendUint(b, uint64(mult), 10)
		}
		b = append(b, '}')
	}
	return string(b)
}

// mergeMetadata merges src into dst: a key dst lacks is added; two structs
// under one key are merged in turn; otherwise dst's value stays. src (a
// rule's metadata, shared by every request) is never modified: a struct
// added to dst is a copy, since a later merge may write into it.
func mergeMetadata(dst, src *structpb.Struct) {
	for k, v := range src.GetFields() {
		cur, ok := dst.Fields[k]
		if !ok {
			if v.GetStructValue() != nil {
				v = proto.Clone(v).(*structpb.Value)
			}
			dst.Fields[k] = v
			continue
		}
		if a, b := cur.GetStructValue(), v.GetStructValue(); a != nil && b != nil {
			mergeMetadata(a, b)
		}
	}
}
