package config

// Secret is a string that must not be shown: Config.Redacted, fmt and
// encoders that use MarshalText print "<redacted>" instead of a non-empty
// value. Use string(s) to read it.
type Secret string

// RedactedText is what a non-empty Secret prints as.
const RedactedText = "<redacted>"

// String returns "<redacted>", or "" for an empty secret.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return RedactedText
}

// MarshalText returns the redacted form, never the secret.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText stores text as the secret.
func (s *Secret) UnmarshalText(text []byte) error {
	*s = Secret(text)
	return nil
}
