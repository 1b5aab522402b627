package server

import (
	"encoding/json"
	"strconv"
	"time"
	"unsafe"
)

// header is one HTTP response header to add.
type header struct {
	key, value string
}

// Headers the server adds besides the three configurable ones.
const (
	retryAfterHeader     = "Retry-After"
	draftPolicyHeader    = "RateLimit-Policy"
	draftRateLimitHeader = "RateLimit"
	contentTypeHeader    = "content-type"
	jsonContentType      = "application/json"
)

// mostRestrictive returns the index of the verdict that the limit,
// remaining and reset headers describe, or -1 when no firm (counted,
// non-shadow) verdict exists. The order: a refusing verdict first; then the
// lowest remaining; then the longest reset (its quota stays low longest);
// then the smallest capacity; then request order.
func mostRestrictive(vs []verdict) int {
	best := -1
	for i := range vs {
		v := &vs[i]
		if v.kind != kindCounted || v.shadow {
			continue
		}
		if best < 0 || moreRestrictive(v, &vs[best]) {
			best = i
		}
	}
	return best
}

func moreRestrictive(a, b *verdict) bool {
	if ra, rb := a.refused(), b.refused(); ra != rb {
		return ra
	}
	if a.result.Remaining != b.result.Remaining {
		return a.result.Remaining < b.result.Remaining
	}
	if a.result.ResetAfter != b.result.ResetAfter {
		return a.result.ResetAfter > b.result.ResetAfter
	}
	return a.limit.Capacity() < b.limit.Capacity()
}

// refusing returns the index of the refusing verdict a client must wait for
// longest (ties: request order), or -1 when none refuses.
func refusing(vs []verdict) int {
	best := -1
	for i := range vs {
		if vs[i].refused() && (best < 0 || vs[i].result.RetryAfter > vs[best].result.RetryAfter) {
			best = i
		}
	}
	return best
}

// retryAfterSeconds is the Retry-After value for a refusal: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	return max(1, ceilSeconds(d))
}

// appendHeaders appends the response headers of a decision to dst:
//
//   - limit, remaining and reset (seconds, rounded up) of the most
//     restrictive firm verdict (see mostRestrictive), when any exists;
//   - Retry-After (seconds, rounded up, at least 1) when refused (the
//     request is refused), for the refusing limit with the longest wait;
//   - with h.Draft, RateLimit-Policy and RateLimit, one item per firm limit
//     (items of the same name merged to the most restrictive one).
//
// Shadow rules never show in headers: they must not change what clients
// see.
func appendHeaders(dst []header, h *HeaderSettings, vs []verdict, refused bool) []header {
	if !h.Enabled {
		return dst
	}
	var vb valueBuf
	if i := mostRestrictive(vs); i >= 0 {
		v := &vs[i]
		dst = append(dst,
			header{h.LimitHeader, vb.int(v.limit.Capacity())},
			header{h.RemainingHeader, vb.int(max(0, v.result.Remaining))},
			header{h.ResetHeader, vb.int(ceilSeconds(v.result.ResetAfter))},
		)
	}
	if i := refusing(vs); i >= 0 && refused {
		dst = append(dst, header{retryAfterHeader, vb.int(retryAfterSeconds(vs[i].result.RetryAfter))})
	}
	if h.Draft {
		dst = appendDraftHeaders(dst, &vb, vs)
	}
	return dst
}

// valueBuf builds the header values of one response in (usually) one
// allocation: the strings it returns are views of its array, whose bytes are
// never written again once handed out (appends only go past them, and a
// full array is replaced, not reused). The array is not pooled: the strings
// live in the response until gRPC has sent it.
type valueBuf struct {
	b   []byte
	seg int // where the value being built starts in b
}

// begin starts a value.
func (vb *valueBuf) begin() { vb.seg = len(vb.b) }

// grow makes room for n more bytes, moving the value being built to a new
// array when the current one is full.
func (vb *valueBuf) grow(n int) {
	if cap(vb.b)-len(vb.b) >= n {
		return
	}
	cur := vb.b[vb.seg:]
	b := make([]byte, len(cur), max(2*cap(vb.b), len(cur)+n, 96))
	copy(b, cur)
	vb.b, vb.seg = b, 0
}

// end returns the value built since begin.
func (vb *valueBuf) end() string {
	n := len(vb.b) - vb.seg
	if n == 0 {
		return ""
	}
	s := unsafe.String(&vb.b[vb.seg], n)
	vb.seg = len(vb.b)
	return s
}

func (vb *valueBuf) int(n int64) string {
	vb.begin()
	vb.grow(20)
	vb.b = strconv.AppendInt(vb.b, n, 10)
	return vb.end()
}

// appendDraftHeaders appends the IETF draft (-08 and later) fields:
//
//	RateLimit-Policy: "name";q=100;w=60
//	RateLimit: "name";r=42;t=30
//
// q is the limit's requests and w its period in seconds; r is the
// remaining quota and t the seconds until more quota: the retry delay when
// the limit refused, its reset otherwise.
func appendDraftHeaders(dst []header, vb *valueBuf, vs []verdict) []header {
	for _, key := range [2]string{draftPolicyHeader, draftRateLimitHeader} {
		vb.begin()
		for i := range vs {
			m, name, ok := draftItem(vs, i)
			if !ok {
				continue
			}
			vb.grow(2*len(name) + 64) // escaping at most doubles the name
			if len(vb.b) > vb.seg {
				vb.b = append(vb.b, ", "...)
			}
			vb.b = appendSFString(vb.b, name)
			if key == draftPolicyHeader {
				vb.b = append(vb.b, ";q="...)
				vb.b = strconv.AppendInt(vb.b, m.limit.Requests, 10)
				vb.b = append(vb.b, ";w="...)
				vb.b = strconv.AppendInt(vb.b, ceilSeconds(m.limit.Period), 10)
				continue
			}
			t := ceilSeconds(m.result.ResetAfter)
			if m.refused() {
				t = retryAfterSeconds(m.result.RetryAfter)
			}
			vb.b = append(vb.b, ";r="...)
			vb.b = strconv.AppendInt(vb.b, max(0, m.result.Remaining), 10)
			vb.b = append(vb.b, ";t="...)
			vb.b = strconv.AppendInt(vb.b, t, 10)
		}
		v := vb.end()
		if v == "" {
			return dst
		}
		dst = append(dst, header{key, v})
	}
	return dst
}

// draftItem reports whether vs[i] starts a draft list item: a firm counted
// verdict whose name no earlier firm verdict has. It returns the most
// restrictive verdict of that name (a rule matched by several descriptors
// is one item) and the name.
func draftItem(vs []verdict, i int) (*verdict, string, bool) {
	v := &vs[i]
	if v.kind != kindCounted || v.shadow {
		return nil, "", false
	}
	name := policyName(v)
	for j := range i {
		if w := &vs[j]; w.kind == kindCounted && !w.shadow && policyName(w) == name {
			return nil, "", false
		}
	}
	m := v
	for j := i + 1; j < len(vs); j++ {
		if w := &vs[j]; w.kind == kindCounted && !w.shadow && policyName(w) == name && moreRestrictive(w, m) {
			m = w
		}
	}
	return m, name, true
}

// policyName names the limit of a counted verdict in headers, bodies and
// DescriptorStatus.current_limit: the rule's name, else its path (for an
// Envoy override, "<domain>.(override)").
func policyName(v *verdict) string {
	if v.rule.Name != "" {
		return v.rule.Name
	}
	return v.rule.Path
}

// appendSFString appends s as a Structured Field String (RFC 9651 3.3.3):
// quoted, with '"' and '\' escaped. Bytes outside printable ASCII, which
// the type cannot carry, become '?'.
func appendSFString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20 || c > 0x7e:
			dst = append(dst, '?')
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}

// overLimitBody is the raw_body of a refusal: a small JSON document naming
// the refusing limit (the one with the longest wait), e.g.
//
//	{"code":"over_limit","domain":"edge","limit":{"name":"per-ip","requests_per_unit":100,"unit":"minute"},"retry_after_seconds":12}
//
// It returns nil when nothing refuses.
func overLimitBody(domain string, vs []verdict) []byte {
	i := refusing(vs)
	if i < 0 {
		return nil
	}
	v := &vs[i]
	type limitJSON struct {
		Name            string `json:"name"`
		RequestsPerUnit int64  `json:"requests_per_unit"`
		Unit            string `json:"unit"`
		UnitMultiplier  uint32 `json:"unit_multiplier,omitempty"`
	}
	body := struct {
		Code              string    `json:"code"`
		Domain            string    `json:"domain"`
		Limit             limitJSON `json:"limit"`
		RetryAfterSeconds int64     `json:"retry_after_seconds"`
	}{
		Code:   "over_limit",
		Domain: domain,
		Limit: limitJSON{
			Name:            policyName(v),
			RequestsPerUnit: v.limit.Requests,
			Unit:            v.unit.String(),
		},
		RetryAfterSeconds: retryAfterSeconds(v.result.RetryAfter),
	}
	if v.mult > 1 {
		body.Limit.UnitMultiplier = v.mult
	}
	b, err := json.Marshal(body)
	if err != nil {
		// Unreachable: the document holds only strings and integers.
		return nil
	}
	return b
}
