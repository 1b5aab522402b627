package config

import "github.com/extauthz/extauthz/pkg/secret"

// Secret is a string that must not be shown (secret.String): Config.Redacted,
// fmt and encoders that use MarshalText print "<redacted>" instead of a
// non-empty value. Use string(s) to read it.
type Secret = secret.String

// RedactedText is what a non-empty Secret prints as.
const RedactedText = secret.Redacted
