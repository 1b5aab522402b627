package descriptor

import "unicode/utf8"

// AppendMetricKey appends to dst the name envoyproxy/ratelimit gives the
// statistics of rule r for descriptor d, and returns the extended slice. It
// does not allocate when dst has room.
//
// By default that is r.Path, which holds no request values. With
// value_to_metric on a level, that level shows the request's value instead
// of the key alone (or the pattern); with detailed_metric on the rule, every
// level shows key_value. A pattern with share_threshold always shows the
// pattern. Use it as a metric label only when the rule opts in
// (r.DetailedMetric || r.ValueToMetric): the values make it unbounded.
// Override rules always use Path. Request values are appended as valid
// UTF-8, each invalid byte replaced by U+FFFD, since a label must be UTF-8
// and a value may hold any bytes (a header's raw value).
func AppendMetricKey(dst []byte, r *Rule, d Descriptor) []byte {
	if r.Override || (!r.DetailedMetric && !r.ValueToMetric) {
		return append(dst, r.Path...)
	}
	dst = append(dst, r.Domain...)
	for i := range r.levels {
		lv := &r.levels[i]
		var value string
		if i < len(d) {
			value = d[i].Value
		}
		dst = append(dst, '.')
		dst = append(dst, lv.key...)
		switch {
		case lv.kind == matchShared:
			dst = append(dst, '_')
			dst = append(dst, lv.value...)
		case r.DetailedMetric:
			dst = append(dst, '_')
			dst = appendValidUTF8(dst, value)
		case lv.kind == matchExact:
			dst = append(dst, '_')
			dst = append(dst, lv.value...)
		case lv.valueToMetric:
			if value != "" {
				dst = append(dst, '_')
				dst = appendValidUTF8(dst, value)
			}
		case lv.kind == matchPattern:
			dst = append(dst, '_')
			dst = append(dst, lv.value...)
		}
	}
	return dst
}

// appendValidUTF8 appends s to dst with each byte that is not part of a
// valid UTF-8 sequence replaced by U+FFFD. It does not allocate when dst has
// room.
func appendValidUTF8(dst []byte, s string) []byte {
	for len(s) > 0 {
		i := 0
		for i < len(s) {
			if s[i] < utf8.RuneSelf {
				i++
				continue
			}
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				break
			}
			i += n
		}
		dst = append(dst, s[:i]...)
		if i == len(s) {
			break
		}
		dst = utf8.AppendRune(dst, utf8.RuneError)
		s = s[i+1:]
	}
	return dst
}
