package config

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// The examples of envoyproxy/ratelimit's README ("Examples" section), and
// those of its value_to_metric and share_threshold pull requests, as rule
// files under testdata/readme. Each test checks the behaviour the README
// describes: which rule (limit) applies and which counter it uses.

func loadExample(t *testing.T, name string) *descriptor.Set {
	t.Helper()
	path := filepath.Join("testdata", "readme", name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := LoadRules(f, path)
	if err != nil {
		t.Fatalf("LoadRules(%s): %v", path, err)
	}
	return s
}

// counter is the storage key of the counter d uses under its rule.
func counter(t *testing.T, s *descriptor.Set, domain string, d descriptor.Descriptor) string {
	t.Helper()
	return string(descriptor.AppendKey(nil, mustMatch(t, s, domain, d), d))
}

func wantLimit(t *testing.T, s *descriptor.Set, domain string, d descriptor.Descriptor, requests int64, per time.Duration) *descriptor.Rule {
	t.Helper()
	r := mustMatch(t, s, domain, d)
	if want := (limiter.Limit{Requests: requests, Period: per}); r.Limit != want || r.Unlimited {
		t.Errorf("%s: limit %v (unlimited %v), want %v", d, r.Limit, r.Unlimited, want)
	}
	return r
}

func wantNoMatch(t *testing.T, s *descriptor.Set, domain string, d descriptor.Descriptor) {
	t.Helper()
	if r, ok := s.Match(domain, d); ok {
		t.Errorf("%s matched %s, want no rule", d, r.Path)
	}
}

func TestReadmeExample1(t *testing.T) {
	s := loadExample(t, "example1.yaml")
	wantLimit(t, s, "mongo_cps", desc("database", "users"), 500, time.Second)
	wantLimit(t, s, "mongo_cps", desc("database", "default"), 500, time.Second)
	if counter(t, s, "mongo_cps", desc("database", "users")) == counter(t, s, "mongo_cps", desc("database", "default")) {
		t.Error("users and default share a counter, want one each")
	}
	wantNoMatch(t, s, "mongo_cps", desc("database", "other"))
}

func TestReadmeExample2(t *testing.T) {
	s := loadExample(t, "example2.yaml")
	m1 := desc("message_type", "marketing", "to_number", "2061111111")
	m2 := desc("message_type", "marketing", "to_number", "2062222222")
	wantLimit(t, s, "messaging", m1, 5, 24*time.Hour)
	wantLimit(t, s, "messaging", m2, 5, 24*time.Hour)
	if counter(t, s, "messaging", m1) == counter(t, s, "messaging", m2) {
		t.Error("two numbers share the marketing counter, want one each")
	}
	n1, n2 := desc("to_number", "2061111111"), desc("to_number", "2062222222")
	wantLimit(t, s, "messaging", n1, 100, 24*time.Hour)
	if counter(t, s, "messaging", n1) == counter(t, s, "messaging", n2) {
		t.Error("two numbers share the overall counter, want one each")
	}
	// One request may carry both descriptors; each matches its own rule
	// and counter, so a marketing message counts against both limits.
	if counter(t, s, "messaging", m1) == counter(t, s, "messaging", n1) {
		t.Error("the marketing and overall rules share a counter")
	}
	// The placeholder level has no limit of its own.
	wantNoMatch(t, s, "messaging", desc("message_type", "marketing"))
}

func TestReadmeExample3(t *testing.T) {
	s := loadExample(t, "example3.yaml")
	wantLimit(t, s, "edge_proxy_per_ip", desc("remote_address", "50.0.0.1"), 10, time.Second)
	wantLimit(t, s, "edge_proxy_per_ip", desc("remote_address", "50.0.0.5"), 0, time.Second)
}

func TestReadmeExample4(t *testing.T) {
	d := desc("key", "value", "subkey", "subvalue")
	wantNoMatch(t, loadExample(t, "example4a.yaml"), "example4", d)
	wantLimit(t, loadExample(t, "example4b.yaml"), "example4", d, 300, time.Second)
}

func TestReadmeExample5(t *testing.T) {
	s := loadExample(t, "example5.yaml")
	if r := mustMatch(t, s, "internal", desc("ldap", "x")); !r.Unlimited {
		t.Error("ldap is not unlimited")
	}
	wantLimit(t, s, "internal", desc("azure", "x"), 100, time.Minute)
	// An unlimited descriptor differs from one that matches nothing.
	wantNoMatch(t, s, "internal", desc("gcp", "x"))
}

func TestReadmeExample6(t *testing.T) {
	s := loadExample(t, "example6.yaml")
	a := wantLimit(t, s, "example6", desc("service", "auth-service", "user", "user-a"), 10, time.Second)
	b := wantLimit(t, s, "example6", desc("service", "auth-service", "user", "user-b"), 20, time.Second)
	if !a.Shadow || b.Shadow {
		t.Errorf("shadow: user-a %v, user-b %v; want true, false", a.Shadow, b.Shadow)
	}
}

func TestReadmeExample7(t *testing.T) {
	s := loadExample(t, "example7.yaml")
	d1 := desc("key_1", "value_1", "user", "bkthomps")
	d2 := desc("key_2", "value_2", "user", "bkthomps")
	r1 := wantLimit(t, s, "example7", d1, 5, time.Second)
	r2 := wantLimit(t, s, "example7", d2, 10, time.Second)
	// Alone, each descriptor gets its own limit.
	for _, one := range [][]*descriptor.Rule{{r1}, {r2}} {
		descriptor.DropReplaced(one)
		if one[0] == nil {
			t.Error("a rule was dropped with nothing replacing it")
		}
	}
	// Together, the 10/s rule replaces the 5/s one, which is not counted.
	both := []*descriptor.Rule{r1, r2}
	descriptor.DropReplaced(both)
	if both[0] != nil || both[1] != r2 {
		t.Errorf("after DropReplaced: %v, %v; want nil, the 10/s rule", both[0], both[1])
	}
}

func TestReadmeExample8(t *testing.T) {
	s := loadExample(t, "example8.yaml")
	tests := []struct {
		value      string
		requests   int64
		wantMetric string
	}{
		{value: "unspecified_value", requests: 10, wantMetric: "example8.key1_unspecified_value"},
		{value: "unspecified_value2", requests: 10, wantMetric: "example8.key1_unspecified_value2"},
		{value: "value1", requests: 20, wantMetric: "example8.key1_value1"},
	}
	for _, tc := range tests {
		d := desc("key1", tc.value)
		r := wantLimit(t, s, "example8", d, tc.requests, time.Minute)
		if got := string(descriptor.AppendMetricKey(nil, r, d)); got != tc.wantMetric {
			t.Errorf("%s: metric %q, want %q", d, got, tc.wantMetric)
		}
	}
}

func TestReadmeExample9(t *testing.T) {
	s := loadExample(t, "example9.yaml")
	wantLimit(t, s, "example9", desc("key1", "value1"), 20, time.Minute)
	wantLimit(t, s, "example9", desc("key1", "value2"), 20, time.Minute)
	if counter(t, s, "example9", desc("key1", "value1")) == counter(t, s, "example9", desc("key1", "value2")) {
		t.Error("value1 and value2 share a counter, want one each")
	}
	wantNoMatch(t, s, "example9", desc("key1", "other"))
}

func TestReadmeValueToMetric(t *testing.T) {
	s := loadExample(t, "example10.yaml")
	d := desc("route", "/users", "http_method", "GET", "user_id", "u-42")
	r := wantLimit(t, s, "example10", d, 60, time.Minute)
	if got, want := string(descriptor.AppendMetricKey(nil, r, d)), "example10.route_/users.http_method_GET.user_id"; got != want {
		t.Errorf("metric %q, want %q", got, want)
	}
	if r.Path != "example10.route.http_method.user_id" {
		t.Errorf("path %q, want example10.route.http_method.user_id", r.Path)
	}
}

func TestReadmeShareThreshold(t *testing.T) {
	s := loadExample(t, "example11.yaml")
	a, b := desc("files", "files/a.pdf"), desc("files", "files/b.csv")
	wantLimit(t, s, "example11", a, 10, time.Hour)
	if counter(t, s, "example11", a) != counter(t, s, "example11", b) {
		t.Error("files/a.pdf and files/b.csv have separate counters, want one shared counter")
	}
	c, d := desc("files", "other/a.pdf"), desc("files", "other/b.csv")
	if counter(t, s, "example11", c) == counter(t, s, "example11", d) {
		t.Error("without share_threshold, other/a.pdf and other/b.csv share a counter, want one each")
	}
}
