package server

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/golden"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// counted returns a counted verdict of a fixed-window rule.
func counted(name, path string, requests int64, unit descriptor.Unit, res limiter.Result) verdict {
	r := &descriptor.Rule{Domain: "edge", Name: name, Path: path, Unit: unit.String(), UnitCode: unit,
		Limit: limiter.Limit{Requests: requests, Period: unit.Period()}}
	return verdict{kind: kindCounted, rule: r, limit: r.Limit, unit: unit, result: res}
}

func ok(remaining int64, reset time.Duration) limiter.Result {
	return limiter.Result{Allowed: true, Remaining: remaining, ResetAfter: reset}
}

func refused(reset, retry time.Duration) limiter.Result {
	return limiter.Result{ResetAfter: reset, RetryAfter: retry}
}

func shadowed(v verdict) verdict { v.shadow = true; return v }

func TestHeadersGolden(t *testing.T) {
	on := HeaderSettings{Enabled: true}
	draft := HeaderSettings{Enabled: true, Draft: true}
	tests := []struct {
		name string
		h    HeaderSettings
		vs   []verdict
	}{
		{name: "disabled", h: HeaderSettings{}, vs: []verdict{counted("", "edge.a", 10, descriptor.UnitMinute, ok(9, time.Minute))}},
		{name: "nothing_counted", h: draft, vs: []verdict{{kind: kindUnmatched}, {kind: kindUnlimited}, {kind: kindReplaced}}},
		{name: "single", h: on, vs: []verdict{counted("", "edge.a", 10, descriptor.UnitMinute, ok(9, 59500*time.Millisecond))}},
		{name: "custom_names", h: HeaderSettings{Enabled: true, LimitHeader: "RateLimit-Limit", RemainingHeader: "RateLimit-Remaining", ResetHeader: "RateLimit-Reset"},
			vs: []verdict{counted("", "edge.a", 10, descriptor.UnitMinute, ok(9, time.Minute))}},
		{name: "lowest_remaining_wins", h: on, vs: []verdict{
			counted("big", "edge.a", 1000, descriptor.UnitHour, ok(900, time.Hour)),
			counted("small", "edge.b", 10, descriptor.UnitMinute, ok(3, 30*time.Second)),
			{kind: kindUnmatched},
		}},
		{name: "tie_on_remaining_longest_reset_wins", h: on, vs: []verdict{
			counted("minute", "edge.a", 10, descriptor.UnitMinute, ok(0, 20*time.Second)),
			counted("hour", "edge.b", 100, descriptor.UnitHour, ok(0, 40*time.Minute)),
		}},
		{name: "refusing_limit_wins_and_retry_after", h: on, vs: []verdict{
			counted("admitted_at_zero", "edge.a", 100, descriptor.UnitHour, ok(0, 50*time.Minute)),
			counted("refusing", "edge.b", 10, descriptor.UnitMinute, refused(10*time.Second, 10*time.Second)),
		}},
		{name: "retry_after_longest_wait_rounded_up", h: on, vs: []verdict{
			counted("short", "edge.a", 1, descriptor.UnitSecond, refused(300*time.Millisecond, 300*time.Millisecond)),
			counted("long", "edge.b", 5, descriptor.UnitMinute, refused(2100*time.Millisecond, 2100*time.Millisecond)),
		}},
		{name: "retry_after_at_least_one_second", h: on, vs: []verdict{
			counted("", "edge.a", 1, descriptor.UnitSecond, refused(0, 0)),
		}},
		{name: "shadow_rules_are_invisible", h: draft, vs: []verdict{
			shadowed(counted("shadow", "edge.s", 1, descriptor.UnitSecond, refused(time.Second, time.Second))),
			counted("real", "edge.r", 50, descriptor.UnitMinute, ok(49, time.Minute)),
		}},
		{name: "draft_one_item_per_limit", h: draft, vs: []verdict{
			counted("per-ip", "edge.remote_address", 100, descriptor.UnitMinute, ok(42, 30*time.Second)),
			counted("", "edge.path_/api", 1000, descriptor.UnitDay, ok(999, 5*time.Hour)),
			counted("per-ip", "edge.remote_address", 100, descriptor.UnitMinute, ok(7, 30*time.Second)),
		}},
		{name: "draft_refused_item_uses_retry", h: draft, vs: []verdict{
			counted("per-ip", "edge.remote_address", 100, descriptor.UnitMinute, refused(30*time.Second, 30*time.Second)),
			counted("bucket", "edge.b", 10, descriptor.UnitSecond, limiter.Result{Remaining: 0, ResetAfter: 900 * time.Millisecond, RetryAfter: 100 * time.Millisecond}),
		}},
		{name: "draft_name_escaping", h: draft, vs: []verdict{
			counted(`say "hi" \ bye`, "edge.a", 1, descriptor.UnitSecond, ok(1, time.Second)),
			counted("caf\u00e9\t", "edge.b", 1, descriptor.UnitSecond, ok(1, time.Second)),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			for _, h := range appendHeaders(nil, withDefaultNames(tc.h), tc.vs, refusing(tc.vs) >= 0) {
				fmt.Fprintf(&b, "%s: %s\n", h.key, h.value)
			}
			golden.Check(t, filepath.Join("testdata", "headers", tc.name+".golden"), b.String())
		})
	}
}

func withDefaultNames(h HeaderSettings) *HeaderSettings {
	s, err := Settings{Headers: h}.withDefaults()
	if err != nil {
		panic(err)
	}
	return &s.Headers
}

func TestOverLimitBodyGolden(t *testing.T) {
	override := counted("", "edge.(override)", 3, descriptor.UnitSecond, refused(30*time.Second, 30*time.Second))
	override.mult = 30
	tests := []struct {
		name string
		vs   []verdict
	}{
		{name: "admitted", vs: []verdict{counted("a", "edge.a", 1, descriptor.UnitSecond, ok(0, time.Second))}},
		{name: "longest_wait_named", vs: []verdict{
			counted("short", "edge.a", 1, descriptor.UnitSecond, refused(time.Second, time.Second)),
			shadowed(counted("shadow", "edge.s", 1, descriptor.UnitDay, refused(time.Hour, time.Hour))),
			counted("", "edge.path_/a\"b<c>", 5, descriptor.UnitMinute, refused(42*time.Second, 42*time.Second)),
		}},
		{name: "override_with_multiplier", vs: []verdict{override}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			golden.Check(t, filepath.Join("testdata", "body", tc.name+".golden"), string(overLimitBody("edge", tc.vs))+"\n")
		})
	}
}

func TestAppendSFString(t *testing.T) {
	tests := []struct{ in, want string }{
		{in: "per-ip", want: `"per-ip"`},
		{in: "", want: `""`},
		{in: `a"b\c`, want: `"a\"b\\c"`},
		{in: "tab\there", want: `"tab?here"`},
		{in: "\u00e9", want: `"??"`},
	}
	for _, tc := range tests {
		if got := string(appendSFString(nil, tc.in)); got != tc.want {
			t.Errorf("appendSFString(%q): got %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestDraftHeadersGrowth checks the draft lists against a plain rendering
// when they outgrow valueBuf's first arrays several times.
func TestDraftHeadersGrowth(t *testing.T) {
	var vs []verdict
	var policy, limit []string
	for i := range 40 {
		name := fmt.Sprintf("rule-%02d-%s", i, strings.Repeat("x", i*3))
		vs = append(vs, counted(name, "edge."+name, int64(100+i), descriptor.UnitMinute, ok(int64(i), time.Duration(i+1)*time.Second)))
		policy = append(policy, fmt.Sprintf("%q;q=%d;w=60", name, 100+i))
		limit = append(limit, fmt.Sprintf("%q;r=%d;t=%d", name, i, i+1))
	}
	got := appendHeaders(nil, withDefaultNames(HeaderSettings{Enabled: true, Draft: true}), vs, refusing(vs) >= 0)
	if len(got) != 5 {
		t.Fatalf("got %d headers, want 5", len(got))
	}
	if want := strings.Join(policy, ", "); got[3].value != want {
		t.Errorf("got policy\n%s\nwant\n%s", got[3].value, want)
	}
	if want := strings.Join(limit, ", "); got[4].value != want {
		t.Errorf("got limit\n%s\nwant\n%s", got[4].value, want)
	}
	if got[0].value != "100" || got[1].value != "0" || got[2].value != "1" {
		t.Errorf("got X-RateLimit values %q %q %q, want 100 0 1", got[0].value, got[1].value, got[2].value)
	}
}
