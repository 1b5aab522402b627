package descriptor

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Key format (AppendKey). A key is printable when the values are, so it
// reads well in redis-cli, and it parses back unambiguously, which makes the
// encoding injective:
//
//	key      = [ "n" field(tenant) ] algorithm field(domain) ( levels | "o" overrides ) [ "@" period ]
//	                                           ("n" prefix: AppendTenantKey, tiers.go;
//	                                           "@" suffix: AppendCounterKey)
//	levels   = { field(key) kind values }
//	kind     = "e" field(literal value)        exact value
//	         | "k" field(request value)        key only: one counter per value
//	         | "p" field(pattern) field(value) pattern: one counter per value
//	         | "s" field(pattern)              pattern with share_threshold
//	overrides= { field(key) field(value) }     Set.Override: every entry counted
//	algorithm= "f" | "w" | "t"                 fixed, sliding window, token bucket
//	period   = decimal(nanoseconds)            the effective limit's period
//	field(s) = decimal(len(s)) ":" s           when len(s) <= MaxRawField
//	         | "#" hex(sha256(s)[:16])         otherwise (32 hex digits)
//
// A field starts with a digit or '#', never with a kind letter, "o" or "@", and
// its length is explicit, so no value can run into the next token: for
// example "a_b"+"c" and "a"+"b_c" encode as 3:a_b…1:c and 1:a…3:b_c. Long
// strings are hashed to bound the key length; two of them collide only if
// SHA-256 truncated to 128 bits does.

// MaxRawField is the longest string AppendKey copies into a key; longer ones
// (typically request values such as paths or user agents) are replaced by a
// 128-bit hash.
const MaxRawField = 64

const keyOverride = 'o'

// keyPeriod starts the period suffix of AppendCounterKey.
const keyPeriod = '@'

// AppendCounterKey appends the storage key of the counter that counts d
// under rule r for tenant with the effective limit l: r.Limit, or what
// Rule.Resolve gave (a tier or an identity override). It is
// AppendTenantKey's key, followed by "@" and l's period in nanoseconds
// whenever that period can differ between requests of the same counter:
// always for an Override rule (Envoy's per-request limit), and when l.Period
// differs from the rule's. Limits of different periods thus never share a
// window, which each would find stale and restart (issue 16: alternating
// 2/minute and 3/hour admitted every request). Plain rules, and tiers or
// overrides of the rule's own period, keep AppendTenantKey's key, and share
// the rule's counter. It does not allocate when dst has room.
func AppendCounterKey(dst []byte, tenant string, r *Rule, d Descriptor, l limiter.Limit) []byte {
	dst = AppendTenantKey(dst, tenant, r, d)
	if r.Override || l.Period != r.Limit.Period {
		dst = append(dst, keyPeriod)
		dst = strconv.AppendInt(dst, int64(l.Period), 10)
	}
	return dst
}

func algorithmCode(a limiter.Algorithm) byte {
	switch a {
	case limiter.SlidingWindow:
		return 'w'
	case limiter.TokenBucket:
		return 't'
	default:
		return 'f'
	}
}

// appendField appends one length-prefixed or hashed string.
func appendField(dst []byte, s string) []byte {
	if len(s) <= MaxRawField {
		dst = strconv.AppendUint(dst, uint64(len(s)), 10)
		dst = append(dst, ':')
		return append(dst, s...)
	}
	// Hash s through dst's spare capacity: sha256.Sum256 needs a []byte, and
	// []byte(s) would allocate for every long value. A pooled buffer grows
	// once and is then reused.
	start := len(dst)
	dst = append(dst, s...)
	sum := sha256.Sum256(dst[start:])
	dst = append(dst[:start], '#')
	return hex.AppendEncode(dst, sum[:16])
}
