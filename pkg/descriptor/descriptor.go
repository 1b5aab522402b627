// Package descriptor matches rate-limit descriptors against the rule tree of
// each domain and encodes the storage key of every counter.
//
// Matching follows envoyproxy/ratelimit (see Set.Match): at each level an
// exact value wins over a '*' pattern (first in file order), which wins over
// a key-only entry; there is no backtracking; a rule matches only a
// descriptor with exactly as many entries as the rule's depth. Patterns are
// an extension: envoyproxy/ratelimit only has a trailing '*' (a prefix).
// Counters (AppendKey) are one per value at key-only and pattern levels, and
// one per pattern with share_threshold.
package descriptor

import (
	"errors"
	"fmt"
	"strings"
)

// Entry is one key/value pair of a descriptor, as Envoy's rate_limits actions
// produce them (e.g. {"remote_address", "10.0.0.1"}).
type Entry struct {
	Key   string
	Value string
}

// Descriptor is an ordered list of entries; Envoy sends one per rate_limits
// entry whose actions all produced a value.
type Descriptor []Entry

// String formats d as "(key=value, key=value)".
func (d Descriptor) String() string {
	var b strings.Builder
	b.WriteByte('(')
	for i, e := range d {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(e.Key)
		b.WriteByte('=')
		b.WriteString(e.Value)
	}
	b.WriteByte(')')
	return b.String()
}

// ParseDescriptor parses "key=value,key=value" (as the explain command
// takes it). A backslash escapes ',', '=' and '\\' in keys and values.
// Every entry needs a '=' (its value may be empty) and a key.
func ParseDescriptor(s string) (Descriptor, error) {
	if s == "" {
		return nil, errors.New("empty descriptor: expected key=value[,key=value...]")
	}
	var d Descriptor
	var cur strings.Builder
	var e Entry
	inValue := false
	flush := func() error {
		if !inValue {
			return fmt.Errorf("entry %q of %q has no '=': expected key=value", cur.String(), s)
		}
		e.Value = cur.String()
		if e.Key == "" {
			return fmt.Errorf("entry %d of %q has an empty key: expected key=value", len(d)+1, s)
		}
		d = append(d, e)
		e, inValue = Entry{}, false
		cur.Reset()
		return nil
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '=' && !inValue:
			e.Key, inValue = cur.String(), true
			cur.Reset()
		case c == ',':
			if err := flush(); err != nil {
				return nil, err
			}
		default:
			cur.WriteByte(c)
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return d, nil
}
