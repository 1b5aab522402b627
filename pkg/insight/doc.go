// Package insight records who is being rate limited: per rule, bounded
// heavy-hitter sketches (Space-Saving) of the values refused and of those
// that used the most quota, rule counters and their history, merged across
// replicas through Redis, and served as a JSON API on the admin listener.
package insight
