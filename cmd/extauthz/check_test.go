package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/extauthz/extauthz/pkg/rlsclient/rlstest"
	"github.com/extauthz/extauthz/pkg/server"
)

// rlsRules are the rules of rlstest servers: domain web, per-ip 3 a
// minute, generic_key=healthz unlimited.
const rlsRules = "../../pkg/rlsclient/testdata/config.yaml"

// runCheck runs `extauthz check args...` and returns stdout, stderr and the
// exit code.
func runCheck(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), append([]string{"check"}, args...), func(string) string { return "" }, &stdout, &stderr)
	code := exitCode(err, &stderr)
	return stdout.String(), stderr.String(), code
}

// inOrder reports the first of wants missing from s in order, or "".
func inOrder(s string, wants ...string) string {
	for _, w := range wants {
		i := strings.Index(s, w)
		if i < 0 {
			return w
		}
		s = s[i+len(w):]
	}
	return ""
}

func TestCheckDecisions(t *testing.T) {
	srv := rlstest.Start(t, rlsRules, server.Settings{})
	ip := []string{"--addr", srv.Addr, "--domain", "web", "--descriptor", "remote_address=192.0.2.1"}
	// --hits 0 reads without counting: any number of times.
	for range 4 {
		out, stderr, code := runCheck(t, append(ip, "--hits", "0")...)
		if code != 0 {
			t.Fatalf("--hits 0: exit %d, stderr %q", code, stderr)
		}
		if miss := inOrder(out, "OK  domain web, 1 descriptor(s), nothing counted (--hits 0)", "DESCRIPTOR", "CODE", "LIMIT", "REMAINING", "RESET",
			"remote_address=192.0.2.1", "OK", "3 per minute (per-ip)", "3", "s\n"); miss != "" {
			t.Fatalf("--hits 0: output lacks %q:\n%s", miss, out)
		}
	}
	for i, want := range []struct {
		code      int
		overall   string
		remaining string
	}{{0, "OK", "  2  "}, {0, "OK", "  1  "}, {0, "OK", "  0  "}, {exitOverLimit, "OVER_LIMIT", "  0  "}} {
		out, stderr, code := runCheck(t, ip...)
		if code != want.code {
			t.Fatalf("call %d: exit %d, want %d (stderr %q)", i, code, want.code, stderr)
		}
		if miss := inOrder(out, want.overall+"  domain web, 1 descriptor(s), 1 hit(s) counted", "remote_address=192.0.2.1", want.overall, "(per-ip)", want.remaining); miss != "" {
			t.Errorf("call %d: output lacks %q:\n%s", i, miss, out)
		}
		if stderr != "" {
			t.Errorf("call %d: stderr %q, want none", i, stderr)
		}
	}
	// Several descriptors: unlimited, unmatched, and one over its limit.
	out, _, code := runCheck(t, "--addr", srv.Addr, "--domain", "web", "--descriptor", "generic_key=healthz",
		"--descriptor", "nothing=here", "--descriptor", "remote_address=192.0.2.1", "--hits", "2")
	if code != exitOverLimit {
		t.Errorf("mixed: exit %d, want %d", code, exitOverLimit)
	}
	if miss := inOrder(out, "OVER_LIMIT  domain web, 3 descriptor(s), 2 hit(s) counted", "generic_key=healthz", "OK", "unlimited",
		"nothing=here", "OK", "no limit applies", "remote_address=192.0.2.1", "OVER_LIMIT", "3 per minute (per-ip)"); miss != "" {
		t.Errorf("mixed: output lacks %q:\n%s", miss, out)
	}
}

func TestCheckJSON(t *testing.T) {
	srv := rlstest.Start(t, rlsRules, server.Settings{Headers: server.HeaderSettings{Enabled: true}})
	args := []string{"--addr", srv.Addr, "--domain", "web", "--descriptor", "remote_address=192.0.2.7", "--json", "--hits", "3"}
	for i, want := range []struct {
		code    int
		overall rlsv3.RateLimitResponse_Code
	}{{0, rlsv3.RateLimitResponse_OK}, {exitOverLimit, rlsv3.RateLimitResponse_OVER_LIMIT}} {
		out, stderr, code := runCheck(t, args...)
		if code != want.code {
			t.Fatalf("call %d: exit %d, want %d (stderr %q)", i, code, want.code, stderr)
		}
		resp := new(rlsv3.RateLimitResponse)
		if err := protojson.Unmarshal([]byte(out), resp); err != nil {
			t.Fatalf("call %d: output is not a protojson RateLimitResponse: %v\n%s", i, err, out)
		}
		if resp.OverallCode != want.overall || resp.Statuses[0].CurrentLimit.GetName() != "per-ip" || len(resp.ResponseHeadersToAdd) == 0 {
			t.Errorf("call %d: %v, want %v from per-ip with headers", i, resp, want.overall)
		}
	}
	// The readable form shows the headers too.
	out, _, _ := runCheck(t, args[:len(args)-3]...)
	if miss := inOrder(out, "Headers for the client:", "X-RateLimit-Limit: 3"); miss != "" {
		t.Errorf("headers: output lacks %q:\n%s", miss, out)
	}
}

func TestCheckErrors(t *testing.T) {
	srv := rlstest.Start(t, rlsRules, server.Settings{})
	down := rlstest.DownAddr(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr []string
	}{
		{"server down", []string{"--addr", down, "--domain", "web", "--descriptor", "a=b"}, 1,
			[]string{"check: no decision from " + down, "check that extauthz serve runs there", "--addr is its grpc_addr"}},
		{"plaintext server, --tls", []string{"--addr", srv.Addr, "--tls", "--domain", "web", "--descriptor", "a=b"}, 1,
			[]string{"no decision from", "--tls or --ca-file"}},
		{"refused request", []string{"--addr", srv.Addr, "--domain", "web", "--descriptor", "a=b", "--hits", "2000000000"}, 1,
			[]string{"check: the server refused the request:", "fix --domain, --descriptor or --hits"}},
		{"timeout", []string{"--addr", srv.Addr, "--domain", "web", "--descriptor", "a=b", "--timeout", "1ns"}, 1,
			[]string{"no answer from", "longer --timeout"}},
		{"no domain", []string{"--descriptor", "a=b"}, 2, []string{"--domain and at least one --descriptor are required", "Usage: extauthz check"}},
		{"no descriptor", []string{"--domain", "web"}, 2, []string{"--domain and at least one --descriptor are required"}},
		{"bad descriptor", []string{"--domain", "web", "--descriptor", ""}, 2, []string{"empty descriptor"}},
		{"hits too large", []string{"--domain", "web", "--descriptor", "a=b", "--hits", "4294967296"}, 2, []string{"--hits 4294967296: expected 0 to 4294967295"}},
		{"negative timeout", []string{"--domain", "web", "--descriptor", "a=b", "--timeout", "-1s"}, 2, []string{"--timeout -1s"}},
		{"cert without key", []string{"--domain", "web", "--descriptor", "a=b", "--cert-file", "c.pem"}, 2, []string{"--cert-file and --key-file go together"}},
		{"missing CA file", []string{"--domain", "web", "--descriptor", "a=b", "--ca-file", "/nonexistent/ca.pem"}, 2, []string{"--ca-file"}},
		{"extra argument", []string{"--domain", "web", "--descriptor", "a=b", "now"}, 2, []string{"unexpected arguments: now"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := runCheck(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit %d, want %d (stderr %q)", code, tc.code, stderr)
			}
			if miss := inOrder(stderr, tc.stderr...); miss != "" {
				t.Errorf("stderr lacks %q:\n%s", miss, stderr)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

// TestCheckExitCodes: OVER_LIMIT has a code of its own, apart from errors
// (1) and usage mistakes (2).
func TestCheckExitCodes(t *testing.T) {
	var ee *exitError
	if !errors.As(errUsage, &ee) || exitOverLimit == 0 || exitOverLimit == 1 || exitOverLimit == ee.code {
		t.Errorf("exit code %d of OVER_LIMIT collides with OK, error or usage (%d)", exitOverLimit, ee.code)
	}
}
