package descriptor

// Set is the compiled, immutable rule tree of every domain. It is safe for
// concurrent use; reloads build a new Set and swap it in.
type Set struct {
	// TODO(config helper): trie per domain.
}

// Match returns the rule that descriptor d of domain matches, with
// envoyproxy/ratelimit's precedence at every level: exact value, then
// wildcard value, then key only. ok is false when no rule matches or the
// domain is unknown. Match does not allocate.
func (s *Set) Match(domain string, d Descriptor) (r *Rule, ok bool) {
	return nil, false
}

// HasDomain reports whether s holds rules for domain.
func (s *Set) HasDomain(domain string) bool { return false }

// AppendKey appends to dst the storage key of the counter that descriptor d
// uses under rule r (which d matched), and returns the extended slice. The
// encoding is injective: two different (rule, counted values) pairs never
// produce the same key. It does not allocate when dst has room.
func AppendKey(dst []byte, r *Rule, d Descriptor) []byte {
	return dst
}
