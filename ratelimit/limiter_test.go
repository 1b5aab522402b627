package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/rlsclient/rlstest"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/ratelimit"
)

const testConfig = "testdata/config.yaml"

// withBackends writes testConfig's rules under a backends section to a
// temporary file and returns its path.
func withBackends(t testing.TB, path, backends string) string {
	t.Helper()
	rules, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, append([]byte(backends), rules...), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// slowMachine allows each Redis call a second (default 10ms): the tests
// share a loaded machine.
const slowMachine = "breaker: {call_timeout: 1s}\n"

// redisConfig returns testConfig over a fresh real redis-server.
func redisConfig(t testing.TB) string {
	t.Helper()
	rs := redistest.Start(t, redistest.Options{})
	return withBackends(t, testConfig, fmt.Sprintf("backends:\n  - type: redis\n    url: %s\n%s", rs.URL(), slowMachine))
}

// limiters returns a fresh limiter of each mode over testConfig: in
// process on memory and on a real redis-server, and remote against a real
// RateLimitService with and without response headers.
func limiters(t *testing.T) map[string]*ratelimit.Limiter {
	t.Helper()
	ctx := context.Background()
	local, err := ratelimit.Open(ctx, testConfig)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*ratelimit.Limiter{"local": local}
	onRedis, err := ratelimit.Open(ctx, redisConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	out["local+redis"] = onRedis
	for name, st := range map[string]server.Settings{
		"remote":         {},
		"remote+headers": {Headers: server.HeaderSettings{Enabled: true}},
	} {
		srv := rlstest.Start(t, testConfig, st)
		l, err := ratelimit.Dial(ctx, srv.Addr, ratelimit.RemoteOptions{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		out[name] = l
	}
	for _, l := range out {
		t.Cleanup(func() { _ = l.Close() })
	}
	return out
}

func ip(v string) ratelimit.Descriptor {
	return ratelimit.Descriptor{{Key: "remote_address", Value: v}}
}

func generic(v string) ratelimit.Descriptor {
	return ratelimit.Descriptor{{Key: "generic_key", Value: v}}
}

func decide(t *testing.T, l ratelimit.Decider, ds ...ratelimit.Descriptor) ratelimit.Decision {
	t.Helper()
	d, err := l.Decide(context.Background(), "web", ds)
	if err != nil {
		t.Fatalf("Decide(%v): %v", ds, err)
	}
	if len(d.Statuses) != len(ds) {
		t.Fatalf("Decide(%v): %d statuses, want %d", ds, len(d.Statuses), len(ds))
	}
	return d
}

func TestDecideCounts(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			for i := range 4 {
				d := decide(t, l, ip("192.0.2.1"))
				s := d.Statuses[0]
				wantAllowed := i < 3
				if d.Allowed != wantAllowed || s.Allowed != wantAllowed || !s.Counted {
					t.Fatalf("call %d: allowed %v (status %v, counted %v), want %v", i, d.Allowed, s.Allowed, s.Counted, wantAllowed)
				}
				if s.Limit != 3 || s.Period != time.Minute || s.Rule != "per-ip" || s.Shadow {
					t.Errorf("call %d: status %+v, want per-ip 3 a minute", i, s)
				}
				if want := int64(max(0, 2-i)); s.Remaining != want {
					t.Errorf("call %d: remaining %d, want %d", i, s.Remaining, want)
				}
				if s.Reset <= 0 || s.Reset > time.Minute {
					t.Errorf("call %d: reset %v, want in (0, 1m]", i, s.Reset)
				}
				if wantAllowed && d.RetryAfter != 0 {
					t.Errorf("call %d: allowed with retry after %v", i, d.RetryAfter)
				}
				if !wantAllowed && (d.RetryAfter <= 0 || d.RetryAfter > time.Minute) {
					t.Errorf("call %d: retry after %v, want in (0, 1m]", i, d.RetryAfter)
				}
			}
			// Another address has its own counter.
			if d := decide(t, l, ip("192.0.2.2")); !d.Allowed {
				t.Error("other address refused")
			}
		})
	}
}

func TestDecideKinds(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			unmatched := ratelimit.Descriptor{{Key: "nope", Value: "x"}}
			for range 3 {
				d := decide(t, l, unmatched, generic("healthz"))
				if !d.Allowed || d.Statuses[0].Counted || d.Statuses[1].Counted {
					t.Fatalf("unmatched and unlimited: %+v, want allowed and nothing counted", d)
				}
				if _, ok := d.Limiting(); ok {
					t.Error("Limiting found a status when nothing was counted")
				}
			}
			// The shadow rule allows one a minute and never refuses.
			for i := range 3 {
				d := decide(t, l, generic("trial"))
				s := d.Statuses[0]
				if !d.Allowed || !s.Allowed || !s.Counted || s.Rule != "trial" {
					t.Fatalf("shadow call %d: %+v, want allowed and counted", i, d)
				}
				wantShadow := strings.HasPrefix(name, "local") // a remote service does not say
				if s.Shadow != wantShadow {
					t.Errorf("shadow call %d: Shadow %v, want %v", i, s.Shadow, wantShadow)
				}
				if _, ok := d.Limiting(); ok == wantShadow {
					t.Errorf("shadow call %d: Limiting found %v, want %v", i, ok, !wantShadow)
				}
			}
		})
	}
}

func TestDecideLimitingAndRetry(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			login := ratelimit.Descriptor{{Key: "generic_key", Value: "login"}, {Key: "remote_address", Value: "192.0.2.1"}}
			d := decide(t, l, ip("192.0.2.1"), login)
			s, ok := d.Limiting()
			if !ok || s.Rule != "login" || s.Remaining != 0 || !d.Allowed {
				t.Fatalf("first login: limiting %+v %v, want login with 0 left", s, ok)
			}
			d = decide(t, l, ip("192.0.2.1"), login)
			s, _ = d.Limiting()
			if d.Allowed || s.Rule != "login" || s.Allowed || !d.Statuses[0].Allowed {
				t.Fatalf("second login: %+v, want refused by login only", d)
			}
			// A fixed window: wait for its reset (to the second).
			if d.RetryAfter <= 0 || d.RetryAfter > time.Hour || (d.RetryAfter-s.Reset).Abs() > time.Second {
				t.Errorf("retry after %v, want the login window's reset %v", d.RetryAfter, s.Reset)
			}

			// A token bucket's wait is a refill, shorter than its reset;
			// only with the service's Retry-After header can a client know.
			bucket := ratelimit.Descriptor{{Key: "bucket", Value: "b"}}
			decide(t, l, bucket)
			decide(t, l, bucket)
			d = decide(t, l, bucket)
			if d.Allowed {
				t.Fatal("bucket: third call allowed, want refused (burst 2)")
			}
			if d.RetryAfter <= 0 || d.RetryAfter > 2*time.Second {
				t.Errorf("bucket: retry after %v, want in (0, 2s]", d.RetryAfter)
			}
			// In process the bucket's exact refill (one token a second);
			// remotely the service's Retry-After header, whole seconds.
			switch {
			case strings.HasPrefix(name, "local") && (d.RetryAfter < 900*time.Millisecond || d.RetryAfter > time.Second):
				t.Errorf("bucket: retry after %v, want the refill of one token, (0.9s, 1s]", d.RetryAfter)
			case name == "remote+headers" && d.RetryAfter != time.Second:
				t.Errorf("bucket: retry after %v, want the service's 1s", d.RetryAfter)
			}
		})
	}
}

func TestDecideErrors(t *testing.T) {
	for name, l := range limiters(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			if d, err := l.Decide(ctx, "web", nil); err != nil || !d.Allowed {
				t.Errorf("no descriptors: %+v, %v; want allowed without asking", d, err)
			}
			if _, err := l.Decide(ctx, "web", []ratelimit.Descriptor{{{Key: "", Value: "x"}}}); err == nil {
				t.Error("empty key: no error")
			}
			if _, err := l.Decide(ctx, "", []ratelimit.Descriptor{ip("192.0.2.1")}); err == nil {
				t.Error("empty domain: no error")
			}
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			if _, err := l.Decide(cctx, "web", []ratelimit.Descriptor{ip("192.0.2.1")}); !errors.Is(err, context.Canceled) {
				t.Errorf("canceled: %v, want context.Canceled", err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
			if _, err := l.Decide(ctx, "web", []ratelimit.Descriptor{ip("192.0.2.1")}); !errors.Is(err, ratelimit.ErrClosed) {
				t.Errorf("after Close: %v, want ErrClosed", err)
			}
			if err := l.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
		})
	}
}

func TestRemoteFailureModes(t *testing.T) {
	ctx := context.Background()
	down := rlstest.DownAddr(t)
	ds := []ratelimit.Descriptor{ip("192.0.2.1")}
	for _, tc := range []struct {
		o       ratelimit.RemoteOptions
		wantErr bool
		want    ratelimit.Decision
	}{
		{ratelimit.RemoteOptions{}, true, ratelimit.Decision{}},
		{ratelimit.RemoteOptions{FailureMode: ratelimit.FailOpen}, false, ratelimit.Decision{Allowed: true, Failed: true}},
		{ratelimit.RemoteOptions{FailureMode: ratelimit.FailClosed}, false, ratelimit.Decision{Failed: true, RetryAfter: time.Second}},
		{ratelimit.RemoteOptions{FailureMode: ratelimit.FailClosed, FailClosedRetryAfter: 7 * time.Second}, false, ratelimit.Decision{Failed: true, RetryAfter: 7 * time.Second}},
	} {
		t.Run(tc.o.FailureMode.String(), func(t *testing.T) {
			tc.o.Timeout = 2 * time.Second
			l, err := ratelimit.Dial(ctx, down, tc.o)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			d, err := l.Decide(ctx, "web", ds)
			if (err != nil) != tc.wantErr {
				t.Fatalf("Decide: %v, want error %v", err, tc.wantErr)
			}
			if d.Allowed != tc.want.Allowed || d.Failed != tc.want.Failed || d.RetryAfter != tc.want.RetryAfter || len(d.Statuses) != 0 {
				t.Errorf("Decide = %+v, want %+v", d, tc.want)
			}
		})
	}
	// A server that goes away mid-life: the failure mode takes over.
	srv := rlstest.Start(t, testConfig, server.Settings{})
	l, err := ratelimit.Dial(ctx, srv.Addr, ratelimit.RemoteOptions{FailureMode: ratelimit.FailOpen, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if d := decide(t, l, ip("192.0.2.1")); d.Failed {
		t.Fatal("server up: decision marked failed")
	}
	srv.Stop()
	d, err := l.Decide(ctx, "web", ds)
	if err != nil || !d.Allowed || !d.Failed {
		t.Errorf("server stopped: %+v, %v; want allowed by the failure mode", d, err)
	}
	// Rejected requests stay errors whatever the mode.
	up := rlstest.Start(t, testConfig, server.Settings{})
	l2, err := ratelimit.Dial(ctx, up.Addr, ratelimit.RemoteOptions{FailureMode: ratelimit.FailOpen, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l2.Close()
	if _, err := l2.Decide(ctx, "", ds); err == nil {
		t.Error("empty domain under FailOpen: no error")
	}
}

func TestRemoteOptionsValidate(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		o    ratelimit.RemoteOptions
		path string
	}{
		{ratelimit.RemoteOptions{FailureMode: 9}, "FailureMode"},
		{ratelimit.RemoteOptions{FailClosedRetryAfter: -1}, "FailClosedRetryAfter"},
	} {
		_, err := ratelimit.Dial(ctx, "127.0.0.1:1", tc.o)
		var fe *field.Error
		if !errors.As(err, &fe) || fe.Path != tc.path {
			t.Errorf("Dial(%+v): %v, want a field error at %s", tc.o, err, tc.path)
		}
	}
	if _, err := ratelimit.Dial(ctx, "", ratelimit.RemoteOptions{}); err == nil {
		t.Error("empty address: no error")
	}
}

func TestFailureModeText(t *testing.T) {
	for _, m := range []ratelimit.FailureMode{ratelimit.FailError, ratelimit.FailOpen, ratelimit.FailClosed} {
		b, err := m.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got ratelimit.FailureMode
		if err := got.UnmarshalText(b); err != nil || got != m {
			t.Errorf("round trip of %v: %v, %v", m, got, err)
		}
	}
	var m ratelimit.FailureMode = ratelimit.FailOpen
	if err := m.UnmarshalText(nil); err != nil || m != ratelimit.FailError {
		t.Errorf("empty: %v, %v; want error (the default)", m, err)
	}
	if err := m.UnmarshalText([]byte("envoy")); err == nil || !strings.Contains(err.Error(), "want error, open or closed") {
		t.Errorf("envoy: %v, want the choices", err)
	}
	if _, err := ratelimit.FailureMode(7).MarshalText(); err == nil {
		t.Error("MarshalText(7): no error")
	}
	if s := ratelimit.FailureMode(7).String(); s != "FailureMode(7)" {
		t.Errorf("String(7) = %q", s)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := ratelimit.Open(ctx, "testdata/missing.yaml"); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v, want an error naming it", err)
	}
	bad := withBackends(t, testConfig, "backends:\n  - type: redis\n    url: ftp://127.0.0.1:1\n")
	if _, err := ratelimit.Open(ctx, bad); err == nil || !strings.Contains(err.Error(), "ftp") {
		t.Errorf("invalid redis URL: %v, want an error naming it", err)
	}
	if _, err := ratelimit.New(ctx, nil, ratelimit.LocalOptions{}); err == nil {
		t.Error("New(nil): no error")
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := ratelimit.Open(cctx, testConfig); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v, want context.Canceled", err)
	}
}

func TestMerge(t *testing.T) {
	a := ratelimit.Decision{Allowed: true, Statuses: []ratelimit.Status{{Counted: true, Allowed: true, Limit: 100, Remaining: 50, Rule: "global"}}}
	b := ratelimit.Decision{Allowed: false, RetryAfter: time.Minute, Statuses: []ratelimit.Status{{Counted: true, Limit: 5, Rule: "login"}}}
	m := ratelimit.Merge(a, b)
	s, ok := m.Limiting()
	if m.Allowed || m.RetryAfter != time.Minute || len(m.Statuses) != 2 || !ok || s.Rule != "login" {
		t.Errorf("Merge = %+v, limiting %+v", m, s)
	}
	if &m.Statuses[0] == &a.Statuses[0] {
		t.Error("Merge aliases its input")
	}
}

// TestLocalFailover: in process, a failover chain (Redis, then memory)
// keeps deciding when the redis-server dies, and a lone Redis backend
// answers by the config's failure mode.
func TestLocalFailover(t *testing.T) {
	ctx := context.Background()
	rs := redistest.Start(t, redistest.Options{})
	chained, err := ratelimit.Open(ctx, withBackends(t, testConfig, fmt.Sprintf(
		"backends:\n  - type: redis\n    url: %s\n  - type: memory\n%s", rs.URL(), slowMachine)))
	if err != nil {
		t.Fatal(err)
	}
	defer chained.Close()
	closed, err := ratelimit.Open(ctx, withBackends(t, testConfig, fmt.Sprintf(
		"backends:\n  - type: redis\n    url: %s\nfailure_mode: closed\n%s", rs.URL(), slowMachine)))
	if err != nil {
		t.Fatal(err)
	}
	defer closed.Close()
	if d := decide(t, chained, ip("10.1.1.1")); !d.Allowed || d.Failed || d.Statuses[0].Remaining != 2 {
		t.Fatalf("on redis: %+v, want allowed, 2 remaining", d)
	}
	rs.Kill()
	d := decide(t, chained, ip("10.1.1.1"))
	if !d.Allowed || d.Failed || !d.Statuses[0].Counted || d.Statuses[0].Rule != "per-ip" {
		t.Errorf("redis down, chain: %+v, want a decision by the memory backend", d)
	}
	d, err = closed.Decide(ctx, "web", []ratelimit.Descriptor{ip("10.1.1.1")})
	if err != nil || d.Allowed || !d.Failed || d.RetryAfter <= 0 {
		t.Errorf("redis down, failure_mode closed: %+v, %v; want refused, Failed, a RetryAfter", d, err)
	}
}

// TestNewSameRegisterer: a second Limiter on one Registerer is an error
// naming the clash, not a panic; the first keeps working.
func TestNewSameRegisterer(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.LoadFile(testConfig)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	first, err := ratelimit.New(ctx, cfg, ratelimit.LocalOptions{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	second, err := ratelimit.New(ctx, cfg, ratelimit.LocalOptions{Registerer: reg})
	if err == nil {
		second.Close()
		t.Fatal("second New on the same Registerer: no error")
	}
	if !strings.Contains(err.Error(), "Registerer") {
		t.Errorf("error %q does not say what to do", err)
	}
	other, err := ratelimit.New(ctx, cfg, ratelimit.LocalOptions{Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatalf("New on another Registerer: %v", err)
	}
	other.Close()
}
