// Package secret holds settings that must never be shown: passwords and
// keys print as "<redacted>" through fmt, encoders that use MarshalText,
// and the /config endpoint.
package secret

// String is a string that must not be shown: fmt and encoders that use
// MarshalText print Redacted instead of a non-empty value. Use string(s) to
// read it.
type String string

// Redacted is what a non-empty String prints as.
const Redacted = "<redacted>"

// String returns Redacted, or "" for an empty secret.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return Redacted
}

// MarshalText returns the redacted form, never the secret.
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText stores text as the secret.
func (s *String) UnmarshalText(text []byte) error {
	*s = String(text)
	return nil
}
