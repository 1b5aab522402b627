package descriptor

import (
	"testing"
	"unicode/utf8"
)

func TestAppendMetricKey(t *testing.T) {
	s := mustSet(t,
		// README example 8: detailed_metric on a key-only rule.
		Domain{Name: "example8", Descriptors: []Node{
			{Key: "key1", DetailedMetric: true, RateLimit: perMinute(10)},
			{Key: "key1", Value: "value1", RateLimit: perMinute(20)},
		}},
		// value_to_metric on the upper levels only (envoyproxy/ratelimit#994).
		Domain{Name: "default", Descriptors: []Node{
			{Key: "route", ValueToMetric: true, Descriptors: []Node{
				{Key: "http_method", ValueToMetric: true, Descriptors: []Node{
					{Key: "user_id", RateLimit: perMinute(60)},
				}},
			}},
		}},
		Domain{Name: "wild", Descriptors: []Node{
			{Key: "plain", Value: "foo*", RateLimit: perMinute(1)},
			{Key: "vtm", Value: "foo*", ValueToMetric: true, RateLimit: perMinute(1)},
			{Key: "files", Value: "files/*", ShareThreshold: true, ValueToMetric: true, RateLimit: perMinute(1)},
			{Key: "detailed", Value: "foo*", DetailedMetric: true, RateLimit: perMinute(1)},
			{Key: "shared", Value: "s/*", ShareThreshold: true, DetailedMetric: true, RateLimit: perMinute(1)},
		}},
	)
	tests := []struct {
		name   string
		domain string
		d      Descriptor
		want   string
	}{
		{name: "detailed key only", domain: "example8", d: desc("key1", "unspecified_value"), want: "example8.key1_unspecified_value"},
		{name: "exact value", domain: "example8", d: desc("key1", "value1"), want: "example8.key1_value1"},
		{name: "value_to_metric levels", domain: "default", d: desc("route", "/users", "http_method", "GET", "user_id", "u1"),
			want: "default.route_/users.http_method_GET.user_id"},
		{name: "pattern keeps the pattern", domain: "wild", d: desc("plain", "foo1"), want: "wild.plain_foo*"},
		{name: "pattern with value_to_metric", domain: "wild", d: desc("vtm", "foo1"), want: "wild.vtm_foo1"},
		{name: "share_threshold keeps the pattern", domain: "wild", d: desc("files", "files/a.pdf"), want: "wild.files_files/*"},
		{name: "detailed pattern", domain: "wild", d: desc("detailed", "foo1"), want: "wild.detailed_foo1"},
		{name: "detailed share_threshold", domain: "wild", d: desc("shared", "s/x"), want: "wild.shared_s/*"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, ok := s.Match(tc.domain, tc.d)
			if !ok {
				t.Fatalf("no match for %s", tc.d)
			}
			if got := string(AppendMetricKey(nil, r, tc.d)); got != tc.want {
				t.Errorf("AppendMetricKey(%s) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
	over, _ := s.Override("wild", UnitSecond, 1)
	if got := string(AppendMetricKey(nil, &over, desc("k", "v"))); got != "wild.(override)" {
		t.Errorf("override metric key = %q, want %q", got, "wild.(override)")
	}
}

func TestAppendMetricKeyInvalidUTF8(t *testing.T) {
	s := mustSet(t, Domain{Name: "d", Descriptors: []Node{
		{Key: "h", DetailedMetric: true, RateLimit: perMinute(10)},
		{Key: "v", ValueToMetric: true, RateLimit: perMinute(10)},
	}})
	tests := []struct {
		d    Descriptor
		want string
	}{
		{desc("h", "a\xffb"), "d.h_a\uFFFDb"},
		{desc("h", "\xff"), "d.h_\uFFFD"},
		{desc("h", "é\xe2\x82"), "d.h_é\uFFFD\uFFFD"},
		{desc("h", "ok€"), "d.h_ok€"},
		{desc("v", "\xc3"), "d.v_\uFFFD"},
	}
	for _, tc := range tests {
		r, ok := s.Match("d", tc.d)
		if !ok {
			t.Fatalf("no match for %s", tc.d)
		}
		got := AppendMetricKey(nil, r, tc.d)
		if string(got) != tc.want || !utf8.Valid(got) {
			t.Errorf("AppendMetricKey(%q) = %q, want %q", tc.d[0].Value, got, tc.want)
		}
	}
	r, _ := s.Match("d", desc("h", "x"))
	buf, d := make([]byte, 0, 64), desc("h", "a\xffb")
	if n := testing.AllocsPerRun(100, func() { buf = AppendMetricKey(buf[:0], r, d) }); n != 0 {
		t.Errorf("AppendMetricKey allocates %v times with room in dst, want 0", n)
	}
}
