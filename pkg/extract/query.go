package extract

import (
	"net/url"
	"strings"
)

// QueryValue returns the decoded value of the first parameter called name
// in the raw query string q, and whether it is present and well-formed.
// Parameters are separated by '&'; names are compared after decoding. It
// allocates only to decode an escaped value.
func QueryValue(q, name string) (string, bool) {
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(kv, "=")
		if k != name {
			if !needsUnescape(k) {
				continue
			}
			dk, err := url.QueryUnescape(k)
			if err != nil || dk != name {
				continue
			}
		}
		if !needsUnescape(v) {
			return v, true
		}
		dv, err := url.QueryUnescape(v)
		if err != nil {
			return "", false
		}
		return dv, true
	}
	return "", false
}

func needsUnescape(s string) bool {
	return strings.ContainsAny(s, "%+")
}
