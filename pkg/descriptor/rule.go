package descriptor

import (
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Rule is one rate_limit of a domain's rule tree, compiled. Rules are
// immutable once their Set is built; handlers read them concurrently.
type Rule struct {
	// Domain is the domain the rule belongs to.
	Domain string
	// Name is rate_limit.name, or "" when unset.
	Name string
	// Path names the rule for humans, metrics and explain: the domain and the
	// key (and value, when the rule sets one) of every level, e.g.
	// "mongo_cps.database_users" or "rl.key1_value1.subkey1". It is the
	// stats key envoyproxy/ratelimit uses for the rule, and it never holds a
	// request's values, so it is a bounded metric label.
	Path string
	// Unit is the configured unit ("second", "minute", "hour", "day", and
	// the extensions "week", "month", "year"); Limit.Period is derived from it.
	Unit string
	// UnitCode is Unit as Envoy's RateLimitResponse.RateLimit.Unit enum
	// value (cast it to the proto type for DescriptorStatus.current_limit).
	UnitCode Unit
	// Limit is what the rule enforces. Unused when Unlimited.
	Limit limiter.Limit
	// Unlimited rules match (and so stop the search) but never count.
	Unlimited bool
	// Shadow rules are counted and reported but never refuse.
	Shadow bool
	// Quota rules (envoyproxy/ratelimit's quota_mode) are counted and
	// reported OVER_LIMIT like any rule, but refuse the request only when
	// every quota descriptor of the request is over its limit; a non-quota
	// rule over its limit refuses it as usual.
	Quota bool
	// Metadata is the rule file's metadata of the rule's node, returned in
	// the RateLimitService's dynamic_metadata when the descriptor passes;
	// nil when unset. Shared and read-only: never modify it.
	Metadata *structpb.Struct
	// DetailedMetric and ValueToMetric are envoyproxy/ratelimit's
	// detailed_metric (on the rule's node) and value_to_metric (true when
	// any node on the rule's path sets it). When either is set, use
	// AppendMetricKey instead of Path for per-rule metrics.
	DetailedMetric bool
	ValueToMetric  bool
	// Replaces lists the names of rules this one replaces when both match
	// descriptors of one request.
	Replaces []string
	// Override is true for the rules Set.Override builds from a
	// descriptor's own limit.
	Override bool
	// Source says where the rule was defined (e.g. "rules/edge.yaml:7:5").
	Source string
	// Tiers chooses the limit per request by tier and identity overrides
	// (see ResolveRequest in tiers.go); nil when Limit always applies.
	Tiers *Tiers
	// Chain names the backend chain that counts the rule's hits: its
	// RateLimit.Chain, or for an Override rule Options.ChainsByUnit[unit];
	// "" is the default chain. A tier that changes the unit keeps the
	// rule's chain.
	Chain string
	// Lease is RateLimit.Lease: nil, or the leasing settings every
	// request of the rule carries (limiter.Request.Lease). Overrides never
	// lease.
	Lease *limiter.Lease

	// levels describes how each entry of a matching descriptor was
	// matched, one per level of the tree, root first.
	levels []level
}

// matchKind says how one level of a rule's path matches its entry, and so
// what of the entry's value goes into the counter's key.
type matchKind byte

const (
	// matchExact: the node has a literal value; the key holds it.
	matchExact matchKind = 'e'
	// matchKeyOnly: the node has no value; every value gets its own counter.
	matchKeyOnly matchKind = 'k'
	// matchPattern: the node has a '*' pattern; every matching value gets
	// its own counter.
	matchPattern matchKind = 'p'
	// matchShared: a pattern with share_threshold; all matching values
	// share one counter.
	matchShared matchKind = 's'
)

// level is one level of a rule's path.
type level struct {
	key   string
	value string // the literal value or the pattern; "" for matchKeyOnly
	kind  matchKind
	// valueToMetric is the node's value_to_metric.
	valueToMetric bool
}
