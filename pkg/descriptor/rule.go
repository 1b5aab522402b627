package descriptor

import "github.com/extauthz/extauthz/pkg/limiter"

// Rule is one rate_limit of a domain's rule tree, compiled. Rules are
// immutable once their Set is built; handlers read them concurrently.
type Rule struct {
	// Domain is the domain the rule belongs to.
	Domain string
	// Name is rate_limit.name, or "" when unset.
	Name string
	// Path names the rule for humans, metrics and explain: the domain and the
	// key (and value, when the rule sets one) of every level, e.g.
	// "mongo_cps.database_users" or "rl.key1_value1.subkey1".
	Path string
	// Unit is the configured unit ("second", "minute", "hour", "day", and
	// the extensions "week", "month", "year"); Limit.Period is derived from it.
	Unit string
	// Limit is what the rule enforces. Unused when Unlimited.
	Limit limiter.Limit
	// Unlimited rules match (and so stop the search) but never count.
	Unlimited bool
	// Shadow rules are counted and reported but never refuse.
	Shadow bool
	// DetailedMetric and ValueToMetric are envoyproxy/ratelimit's
	// detailed_metric and value_to_metric.
	DetailedMetric bool
	ValueToMetric  bool
	// Replaces lists the names of rules this one replaces when both match
	// descriptors of one request.
	Replaces []string
}
