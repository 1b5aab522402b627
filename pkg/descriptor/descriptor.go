// Package descriptor matches rate-limit descriptors against the rule tree of
// each domain and encodes the storage key of every counter.
package descriptor

// Entry is one key/value pair of a descriptor, as Envoy's rate_limits actions
// produce them (e.g. {"remote_address", "10.0.0.1"}).
type Entry struct {
	Key   string
	Value string
}

// Descriptor is an ordered list of entries; Envoy sends one per rate_limits
// entry whose actions all produced a value.
type Descriptor []Entry
