package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/golden"
	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/server"
)

var update = golden.Update

func desc(kv ...string) descriptor.Descriptor {
	var d descriptor.Descriptor
	for i := 0; i+1 < len(kv); i += 2 {
		d = append(d, descriptor.Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func mustMatch(t *testing.T, s *descriptor.Set, domain string, d descriptor.Descriptor) *descriptor.Rule {
	t.Helper()
	r, ok := s.Match(domain, d)
	if !ok {
		t.Fatalf("Match(%q, %s): no rule, want one", domain, d)
	}
	return r
}

func TestGoodFiles(t *testing.T) {
	checks := map[string]func(t *testing.T, cfg *Config){
		"empty.good.yaml": func(t *testing.T, cfg *Config) {
			if cfg.GRPCAddr != DefaultGRPCAddr || cfg.HTTPAddr != DefaultHTTPAddr {
				t.Errorf("addresses = %q, %q; want %q, %q", cfg.GRPCAddr, cfg.HTTPAddr, DefaultGRPCAddr, DefaultHTTPAddr)
			}
			if cfg.DefaultAlgorithm != limiter.FixedWindow || cfg.CountMode != limiter.CountAll || cfg.NearLimitRatio != server.DefaultNearLimitRatio {
				t.Errorf("defaults = %v, %v, %v; want fixed_window, CountAll, 0.8", cfg.DefaultAlgorithm, cfg.CountMode, cfg.NearLimitRatio)
			}
			want := server.HeaderSettings{LimitHeader: server.DefaultLimitHeader, RemainingHeader: server.DefaultRemainingHeader, ResetHeader: server.DefaultResetHeader}
			if cfg.ResponseHeaders != want || cfg.OverLimitBody {
				t.Errorf("response headers = %+v, over_limit_body %v; want %+v, false", cfg.ResponseHeaders, cfg.OverLimitBody, want)
			}
			if len(cfg.Backends) != 1 || cfg.Backends[0].Type != "memory" || cfg.Backends[0].Memory.MaxKeys != memstore.DefaultMaxKeys {
				t.Errorf("backends = %+v, want one memory backend with max_keys %d", cfg.Backends, memstore.DefaultMaxKeys)
			}
			if got := cfg.Rules.Domains(); len(got) != 0 {
				t.Errorf("domains = %v, want none", got)
			}
		},
		"minimal.good.yaml": func(t *testing.T, cfg *Config) {
			r := mustMatch(t, cfg.Rules, "edge", desc("remote_address", "1.2.3.4"))
			if want := (limiter.Limit{Requests: 100, Period: time.Minute}); r.Limit != want {
				t.Errorf("limit = %v, want %v", r.Limit, want)
			}
			if want := "testdata/minimal.good.yaml:4:9"; r.Source != want {
				t.Errorf("source = %q, want %q", r.Source, want)
			}
		},
		"full.good.yaml": func(t *testing.T, cfg *Config) {
			if cfg.GRPCAddr != "127.0.0.1:9081" || cfg.HTTPAddr != "127.0.0.1:9080" || cfg.DefaultAlgorithm != limiter.SlidingWindow ||
				cfg.CountMode != limiter.CountIfAllAllowed || cfg.NearLimitRatio != 0.5 || !cfg.OverLimitBody {
				t.Errorf("settings = %+v", cfg)
			}
			want := server.HeaderSettings{Enabled: true, LimitHeader: "RL-Limit", RemainingHeader: "RL-Remaining", ResetHeader: "RL-Reset", Draft: true}
			if cfg.ResponseHeaders != want {
				t.Errorf("response headers = %+v, want %+v", cfg.ResponseHeaders, want)
			}
			if cfg.Backends[0].Memory.MaxKeys != 5000 || cfg.Failover.FailureMode != chain.FailClosed || cfg.Failover.Breaker.CallTimeout != 15*time.Millisecond || cfg.Failover.Readiness != chain.ReadyPrimary {
				t.Errorf("backends/failover = %+v / %+v", cfg.Backends, cfg.Failover)
			}
			tests := []struct {
				d    descriptor.Descriptor
				want limiter.Limit
			}{
				{d: desc("api_key", "test-1"), want: limiter.Limit{Requests: 1, Period: time.Second, Algorithm: limiter.SlidingWindow}},
				{d: desc("api_key", "prod-1"), want: limiter.Limit{Requests: 600, Period: time.Minute, Algorithm: limiter.TokenBucket, Burst: 50}},
				{d: desc("generic_key", "search"), want: limiter.Limit{Requests: 10000, Period: time.Hour, Algorithm: limiter.FixedWindow}},
			}
			for _, tc := range tests {
				if r := mustMatch(t, cfg.Rules, "api", tc.d); r.Limit != tc.want {
					t.Errorf("%s: limit = %v, want %v", tc.d, r.Limit, tc.want)
				}
			}
			if r := mustMatch(t, cfg.Rules, "api", desc("generic_key", "search")); !r.Shadow || r.Name != "search" {
				t.Errorf("search rule: shadow %v, name %q; want true, search", r.Shadow, r.Name)
			}
		},
		"rules_dir.good.yaml": func(t *testing.T, cfg *Config) {
			if got, want := cfg.Rules.Domains(), []string{"dir_one", "dir_two", "inline"}; !slices.Equal(got, want) {
				t.Errorf("domains = %v, want %v", got, want)
			}
			wantFiles := []string{filepath.Join("testdata", "rules", "one.yaml"), filepath.Join("testdata", "rules", "two.yml")}
			if !slices.Equal(cfg.RuleFiles, wantFiles) || cfg.RulesDirPath != filepath.Join("testdata", "rules") {
				t.Errorf("rule files = %v in %q, want %v in testdata/rules", cfg.RuleFiles, cfg.RulesDirPath, wantFiles)
			}
			r := mustMatch(t, cfg.Rules, "dir_two", desc("tenant", "t", "user", "u"))
			if r.Limit.Period != 7*24*time.Hour || r.Source != "testdata/rules/two.yml:5:9" {
				t.Errorf("dir_two rule: period %v, source %q; want a week, testdata/rules/two.yml:5:9", r.Limit.Period, r.Source)
			}
		},
		"token_bucket_default.good.yaml": func(t *testing.T, cfg *Config) {
			want := limiter.Limit{Requests: 10, Period: time.Second, Algorithm: limiter.TokenBucket, Burst: 20}
			if r := mustMatch(t, cfg.Rules, "d", desc("k", "v")); r.Limit != want {
				t.Errorf("limit = %v, want %v", r.Limit, want)
			}
		},
		"anchors.good.yaml": func(t *testing.T, cfg *Config) {
			for k, n := range map[string]int64{"a": 60, "b": 60, "c": 5} {
				if r := mustMatch(t, cfg.Rules, "d", desc(k, "x")); r.Limit.Requests != n || r.Limit.Period != time.Minute {
					t.Errorf("%s: limit = %v, want %d per minute", k, r.Limit, n)
				}
			}
		},
		"compat.good.yaml": func(t *testing.T, cfg *Config) {
			s := cfg.Rules
			if r := mustMatch(t, s, "compat", desc("remote_address", "1.1.1.1")); r.Limit.Requests != 10 || r.Unit != "second" {
				t.Errorf("remote_address: %v per %s, want 10 per second", r.Limit.Requests, r.Unit)
			}
			if r := mustMatch(t, s, "compat", desc("remote_address", "50.0.0.5")); r.Limit.Requests != 0 {
				t.Errorf("blocked address: %d, want 0", r.Limit.Requests)
			}
			if r := mustMatch(t, s, "compat", desc("ldap", "x")); !r.Unlimited {
				t.Error("ldap: not unlimited")
			}
			a := mustMatch(t, s, "compat", desc("service", "s", "user", "user-a"))
			b := mustMatch(t, s, "compat", desc("service", "s", "user", "user-b"))
			if !a.Shadow || !a.DetailedMetric || a.Name != "user_a" || !slices.Equal(b.Replaces, []string{"user_a"}) {
				t.Errorf("users: %+v, %+v", a, b)
			}
			f := mustMatch(t, s, "compat", desc("route", "/r", "files", "files/a"))
			g := mustMatch(t, s, "compat", desc("route", "/r", "files", "files/b"))
			if !f.ValueToMetric || !bytes.Equal(descriptor.AppendKey(nil, f, desc("route", "/r", "files", "files/a")), descriptor.AppendKey(nil, g, desc("route", "/r", "files", "files/b"))) {
				t.Error("share_threshold: files/a and files/b have different counters, want one")
			}
			if _, ok := s.Match("compat", desc("allow_listed", "x")); ok {
				t.Error("allow_listed matched a rule, want none")
			}
		},
	}
	files, err := filepath.Glob("testdata/*.good.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no good files: %v", err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		t.Run(name, func(t *testing.T) {
			cfg, err := LoadFile(file)
			if err != nil {
				t.Fatalf("LoadFile: %v", err)
			}
			if cfg.File != file {
				t.Errorf("File = %q, want %q", cfg.File, file)
			}
			check, ok := checks[name]
			if !ok {
				t.Fatalf("no checks for %s: add them to the table", name)
			}
			check(t, cfg)
			roundTrip(t, cfg)
		})
	}
}

// roundTrip checks that the effective config loads again to the same
// effective config.
func roundTrip(t *testing.T, cfg *Config) {
	t.Helper()
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatalf("Redacted: %v", err)
	}
	again, err := Load(bytes.NewReader(out), cfg.File)
	if err != nil {
		t.Fatalf("loading the output of Redacted: %v\n%s", err, out)
	}
	again.File = cfg.File
	out2, err := again.Redacted()
	if err != nil {
		t.Fatalf("Redacted again: %v", err)
	}
	// The rules_dir comments go away once the domains are inline.
	strip := regexp.MustCompile(`(?m)^\s*#.*\n`)
	if a, b := strip.ReplaceAll(out, nil), strip.ReplaceAll(out2, nil); !bytes.Equal(a, b) {
		t.Errorf("Redacted is not stable:\nfirst:\n%s\nsecond:\n%s", a, b)
	}
	if got, want := again.Rules.Domains(), cfg.Rules.Domains(); !slices.Equal(got, want) {
		t.Errorf("domains after round trip = %v, want %v", got, want)
	}
}

func TestBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string // substrings, each expected in one error line
	}{
		{file: "unknown_field.bad.yaml", want: []string{
			`unknown_field.bad.yaml:1:1: grpc_adr: unknown field "grpc_adr"; did you mean "grpc_addr"?`,
			`:3:3: response_headers.enable: unknown field "enable"; did you mean "enabled"?`,
			`:6:5: domains[0].descriptor: unknown field "descriptor"; did you mean "descriptors"?`,
			`:11:58: domains[1].descriptors[0].rate_limit.requests_per_second: unknown field`,
		}},
		{file: "syntax.bad.yaml", want: []string{"syntax.bad.yaml:3:1: invalid YAML: did not find expected node content"}},
		{file: "two_documents.bad.yaml", want: []string{"two_documents.bad.yaml:2:1: a second YAML document (after ---): the file must hold exactly one"}},
		{file: "repeated_key.bad.yaml", want: []string{
			":2:1: grpc_addr: repeated key (first at line 1, column 1)",
			":7:9: domains[0].descriptors[0].key: repeated key (first at line 6, column 9)",
		}},
		{file: "types.bad.yaml", want: []string{
			":1:12: grpc_addr: expected a string, got a list",
			`:2:18: over_limit_body: expected true or false, got "sometimes"`,
			`:3:19: near_limit_ratio: expected a number, got "high"`,
			":5:3: backends: expected a list, got a mapping",
			":9:14: domains[0].descriptors[0].key: expected a string, got a mapping",
			`:10:22: domains[0].descriptors[0].shadow_mode: expected true or false, got "3"`,
			":11:21: domains[0].descriptors[0].rate_limit: expected a mapping, got a list",
			`:12:5: domains[1]: expected a mapping, got "just a string"`,
		}},
		{file: "duplicate_domain.bad.yaml", want: []string{
			`:6:13: domains[1].domain: duplicate domain "edge": already defined at testdata/duplicate_domain.bad.yaml:2:13`,
		}},
		{file: "duplicate_domain_dir.bad.yaml", want: []string{
			`testdata/rules/one.yaml:1:9: domain: duplicate domain "dir_one": already defined at testdata/duplicate_domain_dir.bad.yaml:4:13`,
		}},
		{file: "duplicate_descriptor.bad.yaml", want: []string{
			`:9:9: domains[0].descriptors[2]: duplicate descriptor: key "remote_address" with value "10.0.0.1" appears twice at this level (first at testdata/duplicate_descriptor.bad.yaml:6:9)`,
			`:12:9: domains[0].descriptors[3]: duplicate descriptor: key "remote_address" without a value appears twice`,
			`:18:13: domains[0].descriptors[4].descriptors[1]: duplicate descriptor: key "path" with value "/api/*"`,
		}},
		{file: "bad_limits.bad.yaml", want: []string{
			":5:55: domains[0].descriptors[0].rate_limit.requests_per_unit: -1 is negative: expected 0 or more",
			`:7:55: domains[0].descriptors[1].rate_limit.requests_per_unit: expected an integer, got "1.5"`,
			`:9:55: domains[0].descriptors[2].rate_limit.requests_per_unit: expected an integer, got "10"`,
			":11:55: domains[0].descriptors[3].rate_limit.requests_per_unit: 4294967296 is too large: expected at most 4294967295",
			":13:21: domains[0].descriptors[4].rate_limit.requests_per_unit: missing: set how many requests each unit admits (0 refuses every request), or unlimited: true",
			":15:21: domains[0].descriptors[5].rate_limit.unit: missing: expected one of second, minute, hour, day, week, month, year",
			":17:21: domains[0].descriptors[6].rate_limit.unit: missing",
			":17:21: domains[0].descriptors[6].rate_limit.requests_per_unit: missing",
		}},
		{file: "unlimited_with_limit.bad.yaml", want: []string{
			":7:17: domains[0].descriptors[0].rate_limit.unit: an unlimited rate_limit is never counted: remove unit (or unlimited)",
			":11:30: domains[0].descriptors[1].rate_limit.requests_per_unit: an unlimited rate_limit is never counted",
			":12:22: domains[0].descriptors[1].rate_limit.algorithm: an unlimited",
			":13:18: domains[0].descriptors[1].rate_limit.burst: an unlimited",
		}},
		{file: "unknown_names.bad.yaml", want: []string{
			`:1:20: default_algorithm: unknown algorithm "leaky_bucket": expected fixed_window, sliding_window or token_bucket`,
			`:6:28: domains[0].descriptors[0].rate_limit.unit: unknown unit "minutes": expected one of second, minute, hour, day, week, month, year`,
			`:8:69: domains[0].descriptors[1].rate_limit.algorithm: unknown algorithm "gcra": expected fixed_window, sliding_window or token_bucket`,
		}},
		{file: "replaces.bad.yaml", want: []string{
			`:10:21: domains[0].descriptors[0].rate_limit.replaces[0].name: a rate_limit cannot replace itself ("a")`,
			`:11:21: domains[0].descriptors[0].rate_limit.replaces[1].name: no rate_limit of this domain is named "missing"; set name: "missing" on the rate_limit to replace`,
			":12:21: domains[0].descriptors[0].rate_limit.replaces[2].name: missing: each replaces entry names the rate_limit it replaces",
			`:20:21: domains[1].descriptors[0].rate_limit.replaces[0].name: no rate_limit of this domain is named "a"`,
		}},
		{file: "burst.bad.yaml", want: []string{
			":5:65: domains[0].descriptors[0].rate_limit.burst: only a token_bucket has a burst, and this rate_limit uses fixed_window: set algorithm: token_bucket or remove burst",
			":7:92: domains[0].descriptors[1].rate_limit.burst: only a token_bucket has a burst, and this rate_limit uses sliding_window",
			":9:90: domains[0].descriptors[2].rate_limit.burst: -1 is negative",
		}},
		{file: "lease.bad.yaml", want: []string{
			":5:78: domains[0].descriptors[0].rate_limit.lease.fraction: 1.5 is out of range",
			":7:79: domains[0].descriptors[1].rate_limit.lease.hot_after: -1 is out of range",
			":9:46: domains[0].descriptors[2].rate_limit.lease: an unlimited rate_limit is never counted: remove lease",
			`rate_limit.lease.fractoin: unknown field "fractoin"; did you mean "fraction"?`,
		}},
		// Issue 16, finding 6: bounds that serve or a backend applied, and validate did not.
		{file: "bounds.bad.yaml", want: []string{
			":1:27: limits.max_hits_addend: 9007199254740992 is too large: expected at most 9007199254740991 (2^53-1",
			":2:37: backends[0].max_keys: 1000000000000 is too large: expected at most 4294967296",
			":7:89: domains[0].descriptors[0].rate_limit.burst: invalid limit: a token bucket refilling 10 per 8760h0m0s holds at most 1462 tokens (146 years of refill), and its burst is 5000: set burst to 1462 or less",
			":15:65: domains[0].descriptors[1].rate_limit.tiers.big.burst: 10000000000000000 is too large: expected at most 4294967295",
			":16:61: domains[0].descriptors[1].rate_limit.tiers.slow.burst: invalid limit: a token bucket refilling 1 per 168h0m0s holds at most 7625 tokens",
		}},
		{file: "share_threshold.bad.yaml", want: []string{
			":6:26: domains[0].descriptors[0].share_threshold: needs a value with a '*' wildcard (e.g. value: /files/*): all values matching it then share one counter",
			":9:26: domains[0].descriptors[1].share_threshold: needs a value with a '*' wildcard",
		}},
		{file: "missing.bad.yaml", want: []string{
			":2:5: domains[0].domain: missing: every rule file needs a domain, e.g. domain: edge",
			":7:9: domains[1].descriptors[0].key: missing: every descriptor needs a key",
			":11:13: domains[1].descriptors[1].descriptors[0].key: missing: every descriptor needs a key",
		}},
		{file: "backends.bad.yaml", want: []string{
			":3:15: backends[0].max_keys: -5 is negative: expected the maximum number of counters kept, e.g. 1000000",
			":4:17: backends[0].fair_share: the first backend has no backend before it to take over from",
			":7:15: backends[1].max_keys: applies only to backends of type memory; this one is of type redis",
			`:8:11: backends[2].type: unknown backend type "memcached": expected memory, redis or postgres`,
			":9:5: backends[3].type: missing: every backend needs a type: memory, redis or postgres",
		}},
		{file: "server.bad.yaml", want: []string{
			`:1:12: grpc_addr: "localhost" is not a listen address: expected HOST:PORT, e.g. 0.0.0.0:8081 or 127.0.0.1:8081`,
			`:2:12: http_addr: "0.0.0.0:99999" is not a listen address`,
			`:3:13: count_mode: unknown count mode "sometimes": expected all or if_all_allowed`,
			":4:19: near_limit_ratio: 1.5 is out of range: expected a fraction of the limit above 0 and at most 1, e.g. 0.8",
			`:7:17: response_headers.limit_header: "X Rate Limit" is not a valid header name: use letters, digits and - (e.g. X-RateLimit-Limit)`,
			":6:3: response_headers: limit_header, remaining_header and reset_header must be three different names",
		}},
		{file: "same_addr.bad.yaml", want: []string{
			"same_addr.bad.yaml:1:12: grpc_addr: grpc_addr and http_addr are both 0.0.0.0:8080: the two servers need different addresses",
		}},
		{file: "failover.bad.yaml", want: []string{
			`:1:15: failure_mode: unknown value "maybe": choices are open, closed, envoy`,
			`:3:13: domain_failure_modes.payments: unknown value "sometimes"`,
			":5:18: breaker.failure_ratio: 1.5 is above 1",
			":6:11: breaker.window: -1s is negative",
			`:7:17: breaker.call_timeout: expected a duration such as 250ms, 5s or 1m, got "soon"`,
			":9:13: health_check.interval: -2s is negative",
			`:10:12: readiness: unknown value "most"`,
		}},
		{file: "rules_dir_missing.bad.yaml", want: []string{
			":1:12: rules_dir: cannot read the rules directory: open testdata/does-not-exist: no such file or directory",
		}},
		{file: "rules_xds.bad.yaml", want: []string{
			`:2:12: rules_xds.address: "xds.example" is not an address: expected HOST:PORT, e.g. xds.example:18000`,
			`:3:22: rules_xds.headers.X-Token: "X-Token": gRPC metadata names are lower case; write "x-token"`,
			":4:16: rules_xds.max_backoff: -1s is negative",
			":5:12: rules_dir: with rules_xds every domain comes from the xDS management server: serve these rules from it and remove rules_dir (or remove rules_xds)",
			":7:3: domains: with rules_xds every domain comes from the xDS management server",
		}},
		{file: "rules_dir_bad_file.bad.yaml", want: []string{
			`testdata/badrules/a.yaml:4:24: descriptors[0].rate_limit.unit: unknown unit "fortnight"`,
			`testdata/badrules/a.yaml:7:5: descriptors[1].colour: unknown field "colour"; expected one of: key, value, rate_limit, descriptors, shadow_mode, detailed_metric, value_to_metric, share_threshold, quota_mode, metadata`,
			"testdata/badrules/a.yaml:5:5: descriptors[1]: duplicate descriptor",
			"testdata/badrules/b.yaml:1:1: domain: missing: every rule file needs a domain",
			"testdata/badrules/c.yaml:1:1: invalid YAML: did not find expected ',' or ']'",
			`testdata/badrules/d.yaml:1:9: domain: duplicate domain "broken": already defined at testdata/badrules/a.yaml:1:9`,
		}},
	}
	files, _ := filepath.Glob("testdata/*.bad.yaml")
	listed := make(map[string]bool)
	for _, tc := range tests {
		listed[tc.file] = true
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is not in the table", f)
		}
	}
	format := regexp.MustCompile(`^testdata/[a-z_/.]+\.ya?ml(:\d+:\d+)?: `)
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", tc.file)
			cfg, err := LoadFile(path)
			if err == nil {
				t.Fatalf("LoadFile(%s) = %+v, nil; want an error", path, cfg)
			}
			got := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("error does not contain %q; got:\n%s", w, got)
				}
			}
			for _, line := range strings.Split(got, "\n") {
				if !format.MatchString(line) {
					t.Errorf("error line %q does not start with file:line:col", line)
				}
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("errors.As(*Error) = false for %v", err)
			}
			golden.Check(t, filepath.Join("testdata", "golden", strings.TrimSuffix(tc.file, ".yaml")+".txt"), got+"\n")
		})
	}
}

func TestLoadFileMissing(t *testing.T) {
	_, err := LoadFile("testdata/nope.yaml")
	if err == nil || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "testdata/nope.yaml") {
		t.Errorf("LoadFile(missing) = %v, want a not-exist error naming the file", err)
	}
}

func TestLoadTooLarge(t *testing.T) {
	big := bytes.Repeat([]byte("#"), MaxFileSize+1)
	if _, err := Load(bytes.NewReader(big), "big.yaml"); err == nil || !strings.Contains(err.Error(), "big.yaml: file is larger than 16 MiB") {
		t.Errorf("Load(17 MiB) = %v, want a size error", err)
	}
}

func TestAliasBomb(t *testing.T) {
	// Each level lists ten copies of the previous one, through the
	// recursive descriptors field: 10^8 descriptors once expanded.
	var b strings.Builder
	b.WriteString("domains:\n")
	for i := range 9 {
		fmt.Fprintf(&b, "  - domain: d%d\n    descriptors: &l%d [", i, i)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			if i == 0 {
				fmt.Fprintf(&b, "{key: k%d}", j)
			} else {
				fmt.Fprintf(&b, "{key: k%d, descriptors: *l%d}", j, i-1)
			}
		}
		b.WriteString("]\n")
	}
	start := time.Now()
	_, err := Load(strings.NewReader(b.String()), "bomb.yaml")
	if err == nil || !strings.Contains(err.Error(), "document too large") {
		t.Fatalf("Load(alias bomb) = %v, want a size error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Load(alias bomb) took %v", d)
	}
}

func TestLoadRules(t *testing.T) {
	s, err := LoadRules(strings.NewReader("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 3, algorithm: token_bucket}\n"), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := mustMatch(t, s, "d", desc("k", "v"))
	if want := (limiter.Limit{Requests: 3, Period: time.Second, Algorithm: limiter.TokenBucket}); r.Limit != want || r.Source != "d.yaml:3:5" {
		t.Errorf("rule = %v at %q, want %v at d.yaml:3:5", r.Limit, r.Source, want)
	}
	_, err = LoadRules(strings.NewReader("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: eon}\n"), "d.yaml")
	if err == nil || !strings.Contains(err.Error(), `d.yaml:4:24: descriptors[0].rate_limit.unit: unknown unit "eon"`) ||
		!strings.Contains(err.Error(), "d.yaml:4:17: descriptors[0].rate_limit.requests_per_unit: missing") {
		t.Errorf("LoadRules(bad unit) = %v, want a positioned unit error", err)
	}
}

func TestLoadRulesLease(t *testing.T) {
	s, err := LoadRules(strings.NewReader("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: 3, lease: {fraction: 0.25, hot_after: 4}}\n  - key: plain\n    rate_limit: {unit: second, requests_per_unit: 3}\n"), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r := mustMatch(t, s, "d", desc("k", "v"))
	if r.Lease == nil || *r.Lease != (limiter.Lease{Fraction: 0.25, HotAfter: 4}) {
		t.Errorf("rule lease = %+v, want fraction 0.25, hot_after 4", r.Lease)
	}
	if r := mustMatch(t, s, "d", desc("plain", "v")); r.Lease != nil {
		t.Errorf("rule without lease has %+v", r.Lease)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{err: Error{File: "f.yaml", Line: 3, Col: 7, Path: "a.b", Msg: "bad"}, want: "f.yaml:3:7: a.b: bad"},
		{err: Error{File: "f.yaml", Path: "a", Msg: "bad"}, want: "f.yaml: a: bad"},
		{err: Error{Line: 1, Col: 2, Msg: "bad"}, want: "1:2: bad"},
		{err: Error{Msg: "bad"}, want: "bad"},
	}
	for _, tc := range tests {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("Error() = %q, want %q", got, tc.want)
		}
	}
}

func TestSecret(t *testing.T) {
	type withSecret struct {
		User     string `yaml:"user"`
		Password Secret `yaml:"password"`
		Empty    Secret `yaml:"empty"`
	}
	var v withSecret
	dec := newDecoder("s.yaml")
	doc, err := parse([]byte("user: u\npassword: hunter2\n"), "s.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dec.decode(doc, reflectValue(&v), "")
	if len(dec.errs) > 0 || string(v.Password) != "hunter2" {
		t.Fatalf("decoded %+v, %v; want password hunter2", v, dec.errs)
	}
	n, err := encodeValue(reflectValue(&v))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range n.Content {
		got = append(got, c.Value)
	}
	if want := []string{"user", "u", "password", RedactedText}; !slices.Equal(got, want) {
		t.Errorf("encoded %v, want %v", got, want)
	}
	if s := v.Password.String(); s != RedactedText {
		t.Errorf("String() = %q, want %q", s, RedactedText)
	}
}

func TestRedacted(t *testing.T) {
	cfg, err := LoadFile("testdata/rules_dir.good.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/golden/redacted_rules_dir.yaml", string(out))
}

// TestExampleConfig loads examples/config.yaml, the file the README runs.
func TestExampleConfig(t *testing.T) {
	cfg, err := LoadFile(filepath.Join("..", "..", "examples", "config.yaml"))
	if err != nil {
		t.Fatalf("examples/config.yaml: %v", err)
	}
	if cfg.GRPCAddr != "127.0.0.1:8081" || cfg.HTTPAddr != "127.0.0.1:8080" || len(cfg.Backends) != 1 || cfg.Backends[0].Type != "memory" {
		t.Errorf("settings = %s %s %+v; want 127.0.0.1:8081, 127.0.0.1:8080, one memory backend", cfg.GRPCAddr, cfg.HTTPAddr, cfg.Backends)
	}
	s := cfg.Rules
	tests := []struct {
		d        descriptor.Descriptor
		name     string
		limit    limiter.Limit
		shadow   bool
		shared   descriptor.Descriptor // a descriptor sharing the counter, if any
		separate descriptor.Descriptor // a descriptor with its own counter, if any
	}{
		{d: desc("remote_address", "10.0.0.1"), name: "per-ip", limit: limiter.Limit{Requests: 60, Period: time.Minute},
			separate: desc("remote_address", "10.0.0.2")},
		{d: desc("api_key", "test-1"), name: "api-key-test", limit: limiter.Limit{Requests: 10, Period: time.Minute},
			shared: desc("api_key", "test-2")},
		{d: desc("api_key", "k1"), name: "api-key", limit: limiter.Limit{Requests: 600, Period: time.Minute},
			separate: desc("api_key", "k2")},
		{d: desc("path", "/api/v1/export", "user", "u1"), name: "export",
			limit:  limiter.Limit{Requests: 1, Period: time.Second, Algorithm: limiter.TokenBucket, Burst: 5},
			shared: desc("path", "/api/v2/export", "user", "u1"), separate: desc("path", "/api/v1/export", "user", "u2")},
		{d: desc("generic_key", "global"), name: "global", limit: limiter.Limit{Requests: 1000, Period: time.Second}},
		{d: desc("generic_key", "search"), name: "search-trial", shadow: true,
			limit: limiter.Limit{Requests: 100, Period: time.Minute, Algorithm: limiter.SlidingWindow}},
	}
	for _, tc := range tests {
		r := mustMatch(t, s, "edge", tc.d)
		if r.Name != tc.name || r.Limit != tc.limit || r.Shadow != tc.shadow {
			t.Errorf("%s: rule %q %v shadow %v; want %q %v shadow %v", tc.d, r.Name, r.Limit, r.Shadow, tc.name, tc.limit, tc.shadow)
		}
		key := string(descriptor.AppendKey(nil, r, tc.d))
		if tc.shared != nil && counter(t, s, "edge", tc.shared) != key {
			t.Errorf("%s and %s have separate counters, want one", tc.d, tc.shared)
		}
		if tc.separate != nil && counter(t, s, "edge", tc.separate) == key {
			t.Errorf("%s and %s share a counter, want one each", tc.d, tc.separate)
		}
	}
	if r := mustMatch(t, s, "edge", desc("generic_key", "healthz")); !r.Unlimited {
		t.Error("healthz is not unlimited")
	}
}

// TestRedactedHidesSecrets checks that /config never shows a password.
func TestRedactedHidesSecrets(t *testing.T) {
	const file = `
backends:
  - type: redis
    url: redis://127.0.0.1:6379/0
    password: hunter2-secret
`
	cfg, err := Load(strings.NewReader(file), "secret.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(out, []byte("hunter2")) || !bytes.Contains(out, []byte("password: "+RedactedText)) {
		t.Errorf("Redacted shows the password or no redaction:\n%s", out)
	}
}

func TestControlCharacters(t *testing.T) {
	tests := []struct {
		name, in, wantErr string
	}{
		{name: "domain", in: "domains:\n  - domain: \"\\n\"\n", wantErr: `fuzz.yaml:2:13: domains[0].domain: domain "\n" contains control characters`},
		{name: "key", in: "domains:\n  - domain: d\n    descriptors:\n      - key: \"a\\tb\"\n        rate_limit: {unit: second, requests_per_unit: 1}\n", wantErr: `domains[0].descriptors[0].key: key "a\tb" contains control characters`},
		{name: "value", in: "domains:\n  - domain: d\n    descriptors:\n      - key: k\n        value: \"v\\n\"\n        rate_limit: {unit: second, requests_per_unit: 1}\n", wantErr: `domains[0].descriptors[0].value: value "v\n" contains control characters`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(strings.NewReader(tc.in), "fuzz.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Load: got %v, want error containing %q", err, tc.wantErr)
			}
		})
	}
}
