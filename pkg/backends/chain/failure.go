package chain

// FailurePolicy is the failure mode of every domain: Domains overrides
// Default. It is immutable once built; For is safe for concurrent use.
type FailurePolicy struct {
	Default FailureMode
	Domains map[string]FailureMode
}

// FailurePolicy returns the failure modes of s: FailureMode, overridden by
// DomainFailureModes.
func (s Settings) FailurePolicy() FailurePolicy {
	return FailurePolicy{Default: s.FailureMode, Domains: s.DomainFailureModes}
}

// For returns the failure mode of domain.
func (p FailurePolicy) For(domain string) FailureMode {
	if m, ok := p.Domains[domain]; ok {
		return m
	}
	return p.Default
}
