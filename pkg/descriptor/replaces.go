package descriptor

import "slices"

// DropReplaced applies rate_limit.replaces across the descriptors of one
// request, as envoyproxy/ratelimit does: matched[i] is the rule descriptor i
// matched (nil for none). Every counted rule whose name appears in the
// replaces of a matched rule (unlimited and replaced rules replace too) is
// set to nil, so it is not counted; the replacing rule applies instead. An
// unlimited rule is never dropped: it counts nothing either way and is
// reported as unlimited. Override rules have no name and replace nothing.
// The server's decision path calls it for every request that matched a rule
// with replaces; it does not allocate for up to 64 descriptors.
func DropReplaced(matched []*Rule) {
	has := false
	for _, r := range matched {
		if r != nil && len(r.Replaces) > 0 {
			has = true
			break
		}
	}
	if !has {
		return
	}
	// Decide every drop before applying any: a replaced rule's own replaces
	// still count, as in envoyproxy/ratelimit.
	var small uint64
	var large []bool
	if len(matched) > 64 {
		large = make([]bool, len(matched))
	}
	for j, target := range matched {
		if target == nil || target.Name == "" || target.Unlimited || target.Override {
			continue
		}
		for _, r := range matched {
			if r != nil && slices.Contains(r.Replaces, target.Name) {
				if large != nil {
					large[j] = true
				} else {
					small |= 1 << j
				}
				break
			}
		}
	}
	for j := range matched {
		if large != nil && large[j] || large == nil && small&(1<<j) != 0 {
			matched[j] = nil
		}
	}
}
