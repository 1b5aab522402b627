package extract

import (
	"fmt"
	"strings"
)

// segment is one '/'-separated part of a path template: a literal, or a
// {param} that matches any one non-empty segment.
type segment struct {
	lit   string
	param string
}

// parseTemplate compiles a route template such as "/users/{id}/posts".
// Every segment is a literal or exactly one {name}; names are unique.
func parseTemplate(t string) ([]segment, error) {
	if !strings.HasPrefix(t, "/") {
		return nil, fmt.Errorf("%q: want a path starting with /", t)
	}
	parts := strings.Split(t[1:], "/")
	segs := make([]segment, 0, len(parts))
	seen := map[string]bool{}
	for _, p := range parts {
		if strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}") && len(p) > 2 {
			name := p[1 : len(p)-1]
			if strings.ContainsAny(name, "{}") {
				return nil, fmt.Errorf("%q: malformed segment %q", t, p)
			}
			if seen[name] {
				return nil, fmt.Errorf("%q: duplicate {%s}", t, name)
			}
			seen[name] = true
			segs = append(segs, segment{param: name})
			continue
		}
		if strings.ContainsAny(p, "{}") {
			return nil, fmt.Errorf("%q: segment %q: want a literal or one whole {param}", t, p)
		}
		segs = append(segs, segment{lit: p})
	}
	return segs, nil
}

// templateParam returns the index of the {name} segment, or -1.
func templateParam(segs []segment, name string) int {
	for i, s := range segs {
		if s.param == name {
			return i
		}
	}
	return -1
}

// matchTemplate reports whether path matches segs segment by segment, and
// returns the path segment at index capture (when capture >= 0). It does
// not allocate.
func matchTemplate(segs []segment, path string, capture int) (string, bool) {
	if !strings.HasPrefix(path, "/") {
		return "", false
	}
	rest := path[1:]
	var captured string
	for i, s := range segs {
		var seg string
		var more bool
		seg, rest, more = strings.Cut(rest, "/")
		if i < len(segs)-1 && !more {
			return "", false
		}
		if i == len(segs)-1 && more {
			return "", false
		}
		if s.param != "" {
			if seg == "" {
				return "", false
			}
		} else if seg != s.lit {
			return "", false
		}
		if i == capture {
			captured = seg
		}
	}
	return captured, true
}
