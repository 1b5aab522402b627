package descriptor

// Distinct reports whether the value of entry i of a descriptor that
// matched r tells its counters apart: a key-only or pattern level (not
// share_threshold), or any entry of an Override rule, whose counter is one
// per list of entries. Entries of exact or shared levels have one value per
// rule. Traffic insight (pkg/insight) shows a client as the values of its
// distinct entries.
func (r *Rule) Distinct(i int) bool {
	if r.Override || i >= len(r.levels) {
		return r.Override
	}
	k := r.levels[i].kind
	return k == matchKeyOnly || k == matchPattern
}
