package descriptor

import (
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Domain is the rule tree of one domain before compilation: what one
// envoyproxy/ratelimit rule file holds. NewSet compiles a list of them.
type Domain struct {
	// Name is the domain (rule file "domain").
	Name string
	// Descriptors is the top level of the tree.
	Descriptors []Node
	// Source says where the domain was defined (e.g. "rules/edge.yaml:1:1");
	// NewSet prefixes its errors with it and Explain prints it.
	Source string
}

// Node is one entry of a rule tree (a rule file "descriptors" item).
type Node struct {
	// Key must match the descriptor entry's key exactly.
	Key string
	// Value, when set, must match the entry's value: exactly, or as a
	// pattern when it contains '*' (each '*' matches any run of characters,
	// including none). Empty means "any value" (key only).
	Value string
	// RateLimit is the rule of this node, nil when the node only groups
	// nested descriptors (or, without them, exempts its descriptors).
	RateLimit *RateLimit
	// ShadowMode, DetailedMetric, ValueToMetric and ShareThreshold are the
	// rule file's shadow_mode, detailed_metric, value_to_metric and
	// share_threshold. ShareThreshold requires a Value with a '*'.
	ShadowMode     bool
	DetailedMetric bool
	ValueToMetric  bool
	ShareThreshold bool
	// QuotaMode is the rule file's quota_mode: the node's rule, when over
	// its limit, refuses the request only when every quota descriptor of
	// the request is over too (see Rule.Quota).
	QuotaMode bool
	// Metadata is the rule file's metadata, copied into Rule.Metadata; nil
	// when unset. It must not change once the Set is built.
	Metadata *structpb.Struct
	// Descriptors are the nested nodes.
	Descriptors []Node
	// Source says where the node was defined (e.g. "rules/edge.yaml:7:5").
	Source string
}

// RateLimit is a node's rate_limit block, already parsed.
type RateLimit struct {
	// Name and Replaces are rate_limit.name and the names of replaces.
	Name     string
	Replaces []string
	// Unlimited rules match but never count; Unit and RequestsPerUnit are
	// then unused.
	Unlimited bool
	// Unit and RequestsPerUnit (0 refuses everything; at most 2^32-1).
	Unit            Unit
	RequestsPerUnit int64
	// Algorithm counts the hits; Burst is the token bucket capacity (0 means
	// RequestsPerUnit) and is only allowed with limiter.TokenBucket.
	Algorithm limiter.Algorithm
	Burst     int64
	// Tiers, when set, is copied into Rule.Tiers, linked to
	// Options.Identities (see tiers.go).
	Tiers *Tiers
	// Chain names the backend chain that counts the rule ("": the default
	// chain), resolved by the caller (rate_limit.chain or chains_by_unit).
	Chain string
	// Lease, when set, lets replicas lease blocks of the rule's keys'
	// quota (rate_limit.lease; see pkg/lease).
	Lease *limiter.Lease
}
