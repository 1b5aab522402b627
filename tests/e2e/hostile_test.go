package e2e

// The adversarial suite of issue 16: a client (or a direct caller of the
// gRPC ports) tries to get more than its limit through the real binary.
// Every case counts exactly what was admitted and asserts it never exceeds
// the limit (and equals it where the outcome is deterministic, so that each
// assertion can fail).
//
// The cases of issue 16's findings 1, 2, 6, 8 and 10, and of the bypasses
// this suite found, are in hostile_findings_test.go; the Redis Cluster reply-loss proxy is in
// hostile_proxy_test.go.
//
// Clock steps: the binary has no settable clock. A clock stepped back and
// caught up again is covered in process by the limiter conformance subtest
// ClockSteppedBackDoesNotReset (pkg/limiter/limitertest, testClockStepBack:
// every algorithm, 3/minute, clock stepped back 30 s and forward again,
// exactly 3 admitted), run with a fake clock by memstore
// (TestConformanceFakeClock) and by redisstore (TestConformance/FakeClock,
// the script fed the fake time). Served from Redis, counters use Redis's
// own TIME, so a step of the extauthz host's clock does not reach them.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/extauthz/extauthz/internal/redistest"
)

// API keys of hostileAuthz, in clear (the config lists their digests).
const (
	hostileProKey  = "hostile-pro-key"  // id k-pro, tier pro (per-key 4/hour)
	hostileAltKey  = "hostile-alt-key"  // id k-alt, per-ip overridden to 3/day
	hostileFreeKey = "hostile-free-key" // id k-free, no tier (per-key 3/hour)
	hostileAlt2Key = "hostile-alt2-key" // id k-alt2, like k-alt
)

// hostileRules limit domain hz. Hour (and day) windows keep a case inside
// one window; hostileWindow makes sure of it.
const hostileRules = `domains:
  - domain: hz
    descriptors:
      - key: remote_address
        rate_limit: {name: per-ip, unit: hour, requests_per_unit: 5}
      - key: masked_remote_address
        rate_limit: {name: per-net, unit: hour, requests_per_unit: 5}
      - key: api_key
        rate_limit:
          name: per-key
          unit: hour
          requests_per_unit: 3
          tier_key: api_key
          tiers: {pro: {unit: hour, requests_per_unit: 4}}
      - key: user
        rate_limit: {name: per-user, unit: hour, requests_per_unit: 3}
      - key: c
        rate_limit: {name: per-c, unit: hour, requests_per_unit: 5}
`

// hostileAuthz is the authz: section over hostileRules; clientIP is the
// client_ip: mapping (indented by four spaces) and ipEntry the per-ip
// descriptor's entry.
func hostileAuthz(clientIP, ipEntry string) string {
	return fmt.Sprintf(`authz:
  domain: hz
  client_ip:
%s
  api_key:
    sources: [{header: authorization, scheme: Bearer}, {header: x-api-key}]
  api_keys:
    - {id: k-pro, key_sha256: %s, tier: pro}
    - id: k-alt
      key_sha256: %s
      overrides: [{rule: per-ip, unit: day, requests_per_unit: 3}]
    - {id: k-free, key_sha256: %s}
    - id: k-alt2
      key_sha256: %s
      overrides: [{rule: per-ip, unit: day, requests_per_unit: 3}]
  descriptors:
    - name: per-ip
      entries: [%s]
    - name: per-key
      entries: [{from: api_key}]
    - name: per-user
      entries: [{from: header, header: x-user, key: user}]
`, clientIP, sha256Hex(hostileProKey), sha256Hex(hostileAltKey), sha256Hex(hostileFreeKey), sha256Hex(hostileAlt2Key), ipEntry)
}

const (
	hostileHops1  = "    trusted_hops: 1"
	hostileIPDeny = "{from: client_ip, missing: deny, deny_status: 403}"
)

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// hostileBackends are the backends every counting case runs on.
var hostileBackends = []string{"memory", "redis"}

// hostileStart serves cfg (without a backends: section) on backend: memory,
// or a fresh redis-server. Store failures refuse (failure_mode: closed), so
// a failure is never counted as admitted.
func hostileStart(t *testing.T, backend, cfg string) *Process {
	t.Helper()
	be := "backends:\n  - type: memory\n"
	if backend == "redis" {
		srv := redistest.Start(t, redistest.Options{})
		// A generous call timeout: this suite is about counts, on a busy
		// test machine.
		be = "backends:\n  - type: redis\n    url: " + srv.URL() + "\nbreaker: {call_timeout: 2s}\n"
	}
	cfg = be + "failure_mode: closed\nresponse_headers: {enabled: true}\n" + cfg
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", cfg)
	return Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
}

// hostileWindow waits, if need be, so that the current hour and day have
// at least 30 s left: every case of a test then stays in one window.
func hostileWindow() {
	awayFromWindowEdge(time.Hour, 30*time.Second)
	awayFromWindowEdge(24*time.Hour, 30*time.Second)
}

// peerSeq hands out client addresses no other case uses.
var peerSeq atomic.Int64

// freshPeer returns an IPv4 address no other call returned (198.18.0.0/15,
// the benchmarking range).
func freshPeer() string {
	n := peerSeq.Add(1)
	return fmt.Sprintf("198.%d.%d.%d", 18+n>>16&1, n>>8&0xff, n&0xff)
}

// envoyCheck is the CheckRequest Envoy sends for a client at peer whose own
// X-Forwarded-For was clientXFF (Envoy, use_remote_address: true, appends
// peer; "" when the client sent none), with extra headers kv (name, value
// pairs, used as given: a direct caller may send any map).
func envoyCheck(peer, clientXFF string, kv ...string) *authv3.CheckRequest {
	xff := peer
	if clientXFF != "" {
		xff = clientXFF + ", " + peer
	}
	h := map[string]string{"x-forwarded-for": xff}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: peer, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 41000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "localhost:10000", Path: "/", Headers: h,
		}},
	}}
}

// tally is what a run of calls got.
type tally struct {
	admitted, refused int
	// errs counts calls that failed, by gRPC code.
	errs map[codes.Code]int
	// first is the first failure, for messages.
	first error
}

func (r *tally) fail(err error) {
	if r.errs == nil {
		r.errs = map[codes.Code]int{}
	}
	r.errs[status.Code(err)]++
	if r.first == nil {
		r.first = err
	}
}

func (r tally) String() string {
	s := fmt.Sprintf("%d admitted, %d refused", r.admitted, r.refused)
	if len(r.errs) > 0 {
		s += fmt.Sprintf(", failed %v (first: %v)", r.errs, r.first)
	}
	return s
}

// checks sends n Checks made by mk, one after the other. Admitted means OK
// with an OkHttpResponse; any denial (429, 403) is refused.
func checks(t *testing.T, c authv3.AuthorizationClient, n int, mk func(i int) *authv3.CheckRequest) tally {
	t.Helper()
	var r tally
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.Check(ctx, mk(i))
		cancel()
		switch {
		case err != nil:
			r.fail(err)
		case codes.Code(resp.GetStatus().GetCode()) == codes.OK && resp.GetOkResponse() != nil:
			r.admitted++
		default:
			r.refused++
		}
	}
	return r
}

// rlsCalls sends n ShouldRateLimit calls made by mk, one after the other.
func rlsCalls(t *testing.T, c rlsv3.RateLimitServiceClient, n int, mk func(i int) *rlsv3.RateLimitRequest) tally {
	t.Helper()
	var r tally
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := c.ShouldRateLimit(ctx, mk(i))
		cancel()
		switch {
		case err != nil:
			r.fail(err)
		case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
			r.admitted++
		default:
			r.refused++
		}
	}
	return r
}

// expect fails t unless r admitted exactly want and had no failures.
func expect(t *testing.T, what string, r tally, want int) {
	t.Helper()
	if len(r.errs) > 0 || r.admitted != want {
		t.Errorf("%s: %v; want exactly %d admitted and no failure", what, r, want)
	}
}

// rlsReq is a request of domain with one descriptor per kv group: each
// argument is "k=v,k2=v2".
func rlsReq(domain string, descs ...string) *rlsv3.RateLimitRequest {
	req := &rlsv3.RateLimitRequest{Domain: domain}
	for _, d := range descs {
		var kv []string
		for _, e := range strings.Split(d, ",") {
			k, v, _ := strings.Cut(e, "=")
			kv = append(kv, k, v)
		}
		req.Descriptors = append(req.Descriptors, desc(kv...))
	}
	return req
}

// TestHostileClientIP: one client, behind Envoy (trusted_hops: 1, Envoy
// appends the peer), tries every X-Forwarded-For trick and extra address
// header to look like many clients; the per-ip limit (5/hour) holds.
func TestHostileClientIP(t *testing.T) {
	t.Parallel()
	hostileWindow()
	const n = 12
	type tc struct {
		name string
		mk   func(peer string, i int) *authv3.CheckRequest
	}
	cases := []tc{
		{"left-most spoofed", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, fmt.Sprintf("203.0.113.%d", i))
		}},
		{"many entries", func(p string, i int) *authv3.CheckRequest {
			var b strings.Builder
			for j := range 60 {
				fmt.Fprintf(&b, "10.%d.%d.1, ", i, j)
			}
			return envoyCheck(p, b.String()+"192.0.2.1")
		}},
		{"garbage entries", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, []string{"garbage", "unknown", "_hidden", ",,,", " ", "999.1.1.1", "[::1", "1.2.3.4:99999", "\t", "a,b,c", "300.0.0.1, x", "1.2.3.4/8"}[i%12])
		}},
		{"IPv6 entries", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, fmt.Sprintf("2001:db8::%x, [2001:db8::%x]:443", i, i+100))
		}},
		{"mapped IPv4 entries", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, fmt.Sprintf("::ffff:203.0.113.%d", i))
		}},
		{"no X-Forwarded-For of its own", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, "")
		}},
		{"empty entry sent", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, strings.Repeat(",", i))
		}},
		{"X-Envoy-External-Address and X-Real-IP", func(p string, i int) *authv3.CheckRequest {
			a := fmt.Sprintf("203.0.113.%d", i)
			return envoyCheck(p, "", "x-envoy-external-address", a, "x-real-ip", a, "forwarded", "for="+a, "true-client-ip", a)
		}},
		{"a second X-Forwarded-For key in another case", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, "", "X-Forwarded-For", fmt.Sprintf("203.0.113.%d", i))
		}},
		{"one address, several spellings", func(p string, i int) *authv3.CheckRequest {
			spell := []string{p, "::ffff:" + p, p + ":443", "[::ffff:" + p + "]:80", " " + p + "\t"}[i%5]
			req := envoyCheck(p, "")
			req.Attributes.Request.Http.Headers["x-forwarded-for"] = fmt.Sprintf("203.0.113.%d, %s", i, spell)
			return req
		}},
	}
	for _, be := range hostileBackends {
		t.Run(be, func(t *testing.T) {
			p := hostileStart(t, be, hostileRules+hostileAuthz(hostileHops1, hostileIPDeny))
			c := authzClient(t, p)
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					peer := freshPeer()
					expect(t, "one client", checks(t, c, n, func(i int) *authv3.CheckRequest { return tc.mk(peer, i) }), 5)
				})
			}
			t.Run("IPv6 client, several spellings", func(t *testing.T) {
				spells := []string{"2001:db8:77::7", "2001:DB8:77:0:0:0:0:7", "[2001:db8:77::7]:443", "2001:db8:77::7%eth0", "2001:0db8:0077::0007"}
				r := checks(t, c, n, func(i int) *authv3.CheckRequest {
					req := envoyCheck("2001:db8:77::7", "")
					req.Attributes.Request.Http.Headers["x-forwarded-for"] = fmt.Sprintf("2001:db8::%x, %s", i, spells[i%len(spells)])
					return req
				})
				expect(t, "one IPv6 client", r, 5)
			})
			t.Run("Envoy bypassed: no address", func(t *testing.T) {
				r := checks(t, c, n, func(i int) *authv3.CheckRequest {
					req := envoyCheck(freshPeer(), "")
					delete(req.Attributes.Request.Http.Headers, "x-forwarded-for")
					return req
				})
				expect(t, "requests without X-Forwarded-For (missing: deny)", r, 0)
			})
		})
	}
}

// TestHostileClientIPTrust: the other client_ip settings under spoofing:
// two trusted hops, trusted proxy CIDRs, and masks.
func TestHostileClientIPTrust(t *testing.T) {
	t.Parallel()
	hostileWindow()
	const n = 12
	for _, tc := range []struct {
		name, clientIP, entry string
		mk                    func(i int) *authv3.CheckRequest
		want                  int
	}{
		{
			name: "trusted_hops 2: only the second from the right counts", clientIP: "    trusted_hops: 2", entry: hostileIPDeny,
			mk: func(i int) *authv3.CheckRequest {
				// client 198.51.100.70 → outer proxy (appends it) → Envoy (appends the proxy)
				return envoyCheck("10.0.0.9", fmt.Sprintf("203.0.113.%d, 198.51.100.70", i))
			},
			want: 5,
		},
		{
			name: "the peer (no trusted hops or proxies): X-Forwarded-For ignored", clientIP: "    trusted_hops: 0", entry: hostileIPDeny,
			mk: func(i int) *authv3.CheckRequest {
				return envoyCheck([]string{"198.51.100.80", "::ffff:198.51.100.80", "::ffff:c633:6450"}[i%3], fmt.Sprintf("203.0.113.%d", i))
			},
			want: 5,
		},
		{
			name: "trusted_hops 2 with one entry: no address, refused", clientIP: "    trusted_hops: 2", entry: hostileIPDeny,
			mk:   func(i int) *authv3.CheckRequest { return envoyCheck(freshPeer(), "") },
			want: 0,
		},
		{
			name: "trusted_proxies: spoofed entries left of the client", clientIP: "    trusted_proxies: [10.0.0.0/8]", entry: hostileIPDeny,
			mk: func(i int) *authv3.CheckRequest {
				// The client sends addresses of trusted proxies too; the
				// walk stops at the first untrusted entry from the right.
				return envoyCheck("10.0.0.2", fmt.Sprintf("10.9.%d.1, 203.0.113.%d, 198.51.100.71, 10.0.0.1", i, i))
			},
			want: 5,
		},
		{
			name: "trusted_proxies: only trusted entries, longer than the walk", clientIP: "    trusted_proxies: [10.0.0.0/8]", entry: hostileIPDeny,
			mk: func(i int) *authv3.CheckRequest {
				var b strings.Builder
				for j := range 200 {
					fmt.Fprintf(&b, "10.%d.%d.1, ", i, j)
				}
				return envoyCheck("10.0.0.2", b.String()+"10.0.0.1")
			},
			want: 0, // every entry trusted beyond the walk: no address, denied
		},
		{
			name: "v6_mask 64: addresses of one /64", clientIP: hostileHops1, entry: "{from: client_ip, v6_mask: 64, missing: deny, deny_status: 403}",
			mk: func(i int) *authv3.CheckRequest {
				return envoyCheck(fmt.Sprintf("2001:db8:99:1:%x::%x", i, i+1), "")
			},
			want: 5,
		},
		{
			name: "v4_mask 24: addresses of one /24", clientIP: hostileHops1, entry: "{from: client_ip, v4_mask: 24, missing: deny, deny_status: 403}",
			mk:   func(i int) *authv3.CheckRequest { return envoyCheck(fmt.Sprintf("198.51.100.%d", i+1), "") },
			want: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p := hostileStart(t, "memory", hostileRules+hostileAuthz(tc.clientIP, tc.entry))
			expect(t, "one client", checks(t, authzClient(t, p), n, tc.mk), tc.want)
		})
	}
}

// TestHostileKeyForms: the forms of one API key (scheme case, spaces, the
// other source) count on one counter; an id sent as a key, a header name
// in another case and two values joined by Envoy are other (unlisted) keys,
// each with its own small limit, never a listed key's tier. Requests come
// from fresh addresses so that only the per-key limit binds.
func TestHostileKeyForms(t *testing.T) {
	t.Parallel()
	hostileWindow()
	const n = 12
	forms := func(key string) [][2]string {
		return [][2]string{
			{"authorization", "Bearer " + key}, {"authorization", "bearer " + key}, {"authorization", "BEARER   " + key + " "},
			{"authorization", " \tBearer " + key}, {"x-api-key", key}, {"x-api-key", " " + key + "\t"},
		}
	}
	for _, be := range hostileBackends {
		t.Run(be, func(t *testing.T) {
			p := hostileStart(t, be, hostileRules+hostileAuthz(hostileHops1, hostileIPDeny))
			c := authzClient(t, p)
			withKey := func(h [2]string) *authv3.CheckRequest { return envoyCheck(freshPeer(), "", h[0], h[1]) }
			t.Run("the id as a key gets no tier", func(t *testing.T) {
				resp, err := c.Check(context.Background(), envoyCheck(freshPeer(), "", "x-api-key", "k-pro"))
				if err != nil {
					t.Fatal(err)
				}
				if h := resp.GetDeniedResponse().GetHeaders(); h != nil {
					t.Fatalf("refused: %v", resp)
				}
				if v := authzHeaders(resp.GetOkResponse().GetResponseHeadersToAdd())["x-ratelimit-limit"]; v != "3" {
					t.Errorf("the id k-pro sent as a key got limit %s, want the unlisted 3 (pro: 4)", v)
				}
			})
			for _, tc := range []struct {
				name string
				mk   func(i int) *authv3.CheckRequest
				want int
			}{
				{"listed pro key, every form", func(i int) *authv3.CheckRequest { f := forms(hostileProKey); return withKey(f[i%len(f)]) }, 4},
				{"listed key without tier, every form", func(i int) *authv3.CheckRequest { f := forms(hostileFreeKey); return withKey(f[i%len(f)]) }, 3},
				{"unlisted key, every form", func(i int) *authv3.CheckRequest { f := forms("stranger-key"); return withKey(f[i%len(f)]) }, 3},
				{"a listed key's id as a key", func(i int) *authv3.CheckRequest { f := forms("k-free"); return withKey(f[i%len(f)]) }, 3},
				{"a digest as a key", func(i int) *authv3.CheckRequest {
					return withKey([2]string{"x-api-key", "sha256:" + sha256Hex(hostileProKey)[:32]})
				}, 3},
				{"two values joined by Envoy", func(i int) *authv3.CheckRequest {
					return withKey([2]string{"x-api-key", hostileProKey + "," + hostileProKey})
				}, 3},
				{"scheme and key joined with another", func(i int) *authv3.CheckRequest {
					return withKey([2]string{"authorization", "Bearer " + hostileProKey + ",Bearer other"})
				}, 3},
			} {
				t.Run(tc.name, func(t *testing.T) {
					expect(t, "one key from many addresses", checks(t, c, n, tc.mk), tc.want)
				})
			}
			t.Run("header names in other cases, one address", func(t *testing.T) {
				// Envoy lower-cases header names; a direct caller's
				// upper-case names are other headers: no key, and the
				// per-ip limit holds.
				peer := freshPeer()
				r := checks(t, c, n, func(i int) *authv3.CheckRequest {
					return envoyCheck(peer, "", []string{"X-Api-Key", "Authorization", "X-API-KEY"}[i%3], fmt.Sprintf("Bearer k%d", i))
				})
				expect(t, "one address", r, 5)
			})
		})
	}
}

// TestHostileTierHeader: with a tier header configured (authz.tier.header,
// documented as trusted as is), a client naming any tier on one address
// neither escapes the per-ip limit nor gives an unlisted key a listed
// tier's limit (per-key tiers on the listed key, never on the header).
func TestHostileTierHeader(t *testing.T) {
	t.Parallel()
	hostileWindow()
	p := hostileStart(t, "memory", hostileRules+hostileAuthz(hostileHops1, hostileIPDeny)+"  tier: {header: x-plan, trusted: true}\n")
	c := authzClient(t, p)
	peer := freshPeer()
	r := checks(t, c, 12, func(i int) *authv3.CheckRequest {
		return envoyCheck(peer, "", "x-plan", []string{"pro", "enterprise", fmt.Sprintf("t%d", i)}[i%3], "x-tier", "pro")
	})
	expect(t, "one address naming tiers", r, 5)
	r = checks(t, c, 12, func(i int) *authv3.CheckRequest {
		return envoyCheck(freshPeer(), "", "x-api-key", "tier-claimer", "x-plan", "pro")
	})
	expect(t, "an unlisted key claiming pro", r, 3)
}

// TestHostileLongValues: values far beyond authz.max_value_bytes (256) are
// hashed, whole: one long value is one counter, two long values that share
// the first kilobytes are two; on the RateLimitService a value beyond
// limits.max_value_length (4096) is counted under its hash too (an error
// would let Envoy pass the request uncounted).
func TestHostileLongValues(t *testing.T) {
	t.Parallel()
	hostileWindow()
	const n = 10
	long := strings.Repeat("u", 10000)
	for _, be := range hostileBackends {
		t.Run(be, func(t *testing.T) {
			p := hostileStart(t, be, hostileRules+hostileAuthz(hostileHops1, hostileIPDeny))
			c := authzClient(t, p)
			rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
			t.Run("check: one long user", func(t *testing.T) {
				r := checks(t, c, n, func(i int) *authv3.CheckRequest { return envoyCheck(freshPeer(), "", "x-user", long) })
				expect(t, "one long x-user", r, 3)
			})
			t.Run("check: two long users with a common prefix", func(t *testing.T) {
				r := checks(t, c, 2*n, func(i int) *authv3.CheckRequest {
					return envoyCheck(freshPeer(), "", "x-user", long+fmt.Sprint(i%2))
				})
				expect(t, "two long x-users", r, 6)
			})
			t.Run("check: long API key", func(t *testing.T) {
				r := checks(t, c, n, func(i int) *authv3.CheckRequest { return envoyCheck(freshPeer(), "", "x-api-key", long) })
				expect(t, "one long key", r, 3)
			})
			t.Run("rls: value at the bound is counted", func(t *testing.T) {
				v := strings.Repeat("v", 4096)
				expect(t, "4096-byte value", rlsCalls(t, rls, n, func(int) *rlsv3.RateLimitRequest { return rlsReq("hz", "c="+v) }), 5)
			})
			t.Run("rls: value beyond the bound is counted under its hash", func(t *testing.T) {
				v := strings.Repeat("w", 4097)
				r := rlsCalls(t, rls, n, func(int) *rlsv3.RateLimitRequest { return rlsReq("hz", "remote_address=10.9.9.9", "c="+v) })
				if len(r.errs) > 0 || r.admitted != 5 {
					t.Errorf("4097-byte value: %v; want exactly 5 admitted, no error", r)
				}
			})
		})
	}
}

// TestHostileRawHeaderBytes: header_map raw values (Envoy's
// encode_raw_headers) with bytes that are not UTF-8 are counted like any
// other value (issue 16, finding 7: they used to answer INTERNAL after
// counting, which failure_mode_allow let through).
func TestHostileRawHeaderBytes(t *testing.T) {
	t.Parallel()
	hostileWindow()
	for _, be := range hostileBackends {
		t.Run(be, func(t *testing.T) {
			cfg := strings.Replace(hostileRules, "{name: per-user, unit: hour, requests_per_unit: 3}",
				"{name: per-user, unit: hour, requests_per_unit: 3}\n        detailed_metric: true", 1)
			p := hostileStart(t, be, cfg+hostileAuthz(hostileHops1, hostileIPDeny))
			c := authzClient(t, p)
			mk := func(peer string, user []byte) *authv3.CheckRequest {
				req := envoyCheck(peer, "")
				http := req.Attributes.Request.Http
				http.Headers = nil
				http.HeaderMap = &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
					{Key: "x-forwarded-for", RawValue: []byte(peer)},
					{Key: "x-user", RawValue: user},
				}}
				return req
			}
			r := checks(t, c, 10, func(i int) *authv3.CheckRequest { return mk(freshPeer(), []byte("\xff\xfeuser")) })
			expect(t, "one non-UTF-8 user from many addresses", r, 3)
			peer := freshPeer()
			r = checks(t, c, 10, func(i int) *authv3.CheckRequest { return mk(peer, []byte{0xff, byte(i), 0xc3}) })
			expect(t, "non-UTF-8 users from one address", r, 5)
		})
	}
}

// TestHostileAlternatingIdentities: a client alternates identities on one
// address; each counter holds its own limit. Without a key the per-ip rule
// is 5/hour; k-alt overrides it to 3/day (another unit: its own counter,
// issue 16 finding 3); k-pro has no override and shares the plain per-ip
// counter.
func TestHostileAlternatingIdentities(t *testing.T) {
	t.Parallel()
	hostileWindow()
	for _, be := range hostileBackends {
		t.Run(be, func(t *testing.T) {
			p := hostileStart(t, be, hostileRules+hostileAuthz(hostileHops1, hostileIPDeny))
			c := authzClient(t, p)
			rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
			t.Run("check: with and without a key", func(t *testing.T) {
				peer := freshPeer()
				r := checks(t, c, 40, func(i int) *authv3.CheckRequest {
					if i%2 == 0 {
						return envoyCheck(peer, "")
					}
					return envoyCheck(peer, "", "x-api-key", hostileAltKey)
				})
				expect(t, "alternating none / k-alt", r, 5+3)
			})
			t.Run("check: no key, two keys, one with an override", func(t *testing.T) {
				peer := freshPeer()
				r := checks(t, c, 60, func(i int) *authv3.CheckRequest {
					switch i % 3 {
					case 0:
						return envoyCheck(peer, "")
					case 1:
						return envoyCheck(peer, "", "authorization", "Bearer "+hostileProKey)
					}
					return envoyCheck(peer, "", "x-api-key", hostileAlt2Key)
				})
				// none and k-pro share per-ip 5/hour; k-alt2 has per-ip 3/day.
				expect(t, "alternating none / k-pro / k-alt2", r, 5+3)
			})
			t.Run("rls: descriptor overrides of two units, alternating", func(t *testing.T) {
				r := rlsCalls(t, rls, 40, func(i int) *rlsv3.RateLimitRequest {
					req := rlsReq("hz", "c=alternating")
					req.Descriptors[0].Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 3, Unit: 3 /* HOUR */}
					if i%2 == 1 {
						req.Descriptors[0].Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 2, Unit: 4 /* DAY */}
					}
					return req
				})
				expect(t, "alternating overrides of 3/hour and 2/day", r, 3+2)
			})
			t.Run("rls: the rule and an override of another unit, alternating", func(t *testing.T) {
				r := rlsCalls(t, rls, 40, func(i int) *rlsv3.RateLimitRequest {
					req := rlsReq("hz", "c=alternating-rule")
					if i%2 == 1 {
						req.Descriptors[0].Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: 3, Unit: 4 /* DAY */}
					}
					return req
				})
				expect(t, "alternating the rule's 5/hour and an override of 3/day", r, 5+3)
			})
		})
	}
}

// TestHostileHitsAddend: hits_addend abuse on the RateLimitService (rule
// per-c, fixed window 5/hour; refused hits are counted, as in
// envoyproxy/ratelimit).
func TestHostileHitsAddend(t *testing.T) {
	t.Parallel()
	hostileWindow()
	for _, be := range hostileBackends {
		t.Run(be, func(t *testing.T) {
			p := hostileStart(t, be, hostileRules+"limits: {max_hits_addend: 1000}\n")
			rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
			req := func(c string, hits uint32, descHits *uint64) *rlsv3.RateLimitRequest {
				r := rlsReq("hz", "c="+c)
				r.HitsAddend = hits
				if descHits != nil {
					r.Descriptors[0].HitsAddend = wrapperspb.UInt64(*descHits)
				}
				return r
			}
			u := func(v uint64) *uint64 { return &v }
			t.Run("hits_addend 0 is 1", func(t *testing.T) {
				expect(t, "hits 0", rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return req("zero", 0, nil) }), 5)
			})
			t.Run("descriptor hits_addend 0 reads, never consumes or resets", func(t *testing.T) {
				reads := rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return req("peek", 1, u(0)) })
				if len(reads.errs) > 0 {
					t.Fatalf("reads: %v", reads)
				}
				expect(t, "hits 1 after 10 reads", rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return req("peek", 1, nil) }), 5)
				// Over the limit, a read is refused too (it reports the
				// counter), and hits stay refused.
				expect(t, "reads and hits after the limit", rlsCalls(t, rls, 4, func(i int) *rlsv3.RateLimitRequest {
					if i%2 == 0 {
						return req("peek", 1, u(0))
					}
					return req("peek", 1, nil)
				}), 0)
			})
			t.Run("descriptor hits_addend above the request's", func(t *testing.T) {
				hits := []uint64{3, 3, 2, 1}
				r := rlsCalls(t, rls, len(hits), func(i int) *rlsv3.RateLimitRequest { return req("bigger", 1, u(hits[i])) })
				// 3 admitted (3), 3 more refused (6 > 5, and counted), then
				// nothing fits.
				expect(t, "descriptor hits 3, 3, 2, 1", r, 1)
			})
			t.Run("one huge hits_addend at the bound", func(t *testing.T) {
				r := rlsCalls(t, rls, 6, func(i int) *rlsv3.RateLimitRequest {
					if i == 0 {
						return req("huge", 1000, nil)
					}
					return req("huge", 1, nil)
				})
				expect(t, "1000 hits, then single hits", r, 0)
			})
			t.Run("beyond limits.max_hits_addend is InvalidArgument", func(t *testing.T) {
				for _, r := range []*rlsv3.RateLimitRequest{
					req("over", 1001, nil), req("over", 1, u(1001)), req("over", ^uint32(0), nil),
					req("over", 1, u(^uint64(0))), req("over", 1, u(1<<53+1)),
				} {
					_, err := rls.ShouldRateLimit(context.Background(), r)
					if status.Code(err) != codes.InvalidArgument {
						t.Errorf("hits %d, descriptor hits %v: got %v, want InvalidArgument", r.HitsAddend, r.Descriptors[0].HitsAddend, err)
					}
				}
				expect(t, "the same descriptor afterwards", rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return req("over", 1, nil) }), 5)
			})
			t.Run("the same descriptor twice in one request counts twice", func(t *testing.T) {
				r := rlsCalls(t, rls, 5, func(int) *rlsv3.RateLimitRequest { return rlsReq("hz", "c=twice", "c=twice") })
				// Each call takes 2: calls 1 and 2 admitted (4), call 3
				// refused (6 > 5 on the second descriptor).
				expect(t, "c twice per request", r, 2)
			})
		})
	}
}

// TestHostileLimitOverride documents what a direct caller of the
// RateLimitService port gets with Envoy's per-descriptor limit override: it
// replaces the rule tree for that descriptor (README "Matching semantics",
// as in envoyproxy/ratelimit), whatever requests_per_unit it names. The
// port trusts its caller (Envoy, whose override comes from route config);
// the override counts on a counter of its own, so it never resets or uses
// up the rule's counter, and it is enforced exactly.
func TestHostileLimitOverride(t *testing.T) {
	t.Parallel()
	hostileWindow()
	for _, be := range hostileBackends {
		t.Run(be, func(t *testing.T) {
			p := hostileStart(t, be, hostileRules)
			rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
			ovr := func(c string, rpu uint32, unit int32, mult uint32) *rlsv3.RateLimitRequest {
				r := rlsReq("hz", "c="+c)
				r.Descriptors[0].Limit = &ratelimitv3.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: rpu, Unit: typev3.RateLimitUnit(unit)}
				if mult > 0 {
					r.Descriptors[0].Limit.UnitMultiplier = wrapperspb.UInt32(mult)
				}
				return r
			}
			t.Run("huge override: the caller's limit, the rule's counter untouched", func(t *testing.T) {
				expect(t, "override 4294967295/hour", rlsCalls(t, rls, 20, func(int) *rlsv3.RateLimitRequest { return ovr("o1", ^uint32(0), 3, 0) }), 20)
				expect(t, "the rule afterwards", rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return rlsReq("hz", "c=o1") }), 5)
			})
			t.Run("small override is enforced exactly", func(t *testing.T) {
				expect(t, "override 2/hour", rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return ovr("o2", 2, 3, 0) }), 2)
				expect(t, "override 0", rlsCalls(t, rls, 5, func(int) *rlsv3.RateLimitRequest { return ovr("o3", 0, 3, 0) }), 0)
			})
			t.Run("overrides of one unit share a counter", func(t *testing.T) {
				r := rlsCalls(t, rls, 20, func(i int) *rlsv3.RateLimitRequest { return ovr("o4", uint32(2+i%2*2), 3, 0) })
				// 2: 1st ok; 4: 2nd ok; 2: 3rd refused (and counted, fixed
				// window); 4: 4th ok; then the count is past both.
				expect(t, "alternating 2/hour and 4/hour", r, 3)
			})
			t.Run("invalid overrides are InvalidArgument", func(t *testing.T) {
				for _, r := range []*rlsv3.RateLimitRequest{ovr("o5", 10, 0, 0), ovr("o5", 10, 99, 0), ovr("o5", 10, 6, ^uint32(0))} {
					_, err := rls.ShouldRateLimit(context.Background(), r)
					if status.Code(err) != codes.InvalidArgument {
						t.Errorf("override %v: got %v, want InvalidArgument", r.Descriptors[0].Limit, err)
					}
				}
			})
		})
	}
}

// TestHostileReloadUnderLoad: clients hammer one counter while the config
// is rewritten and reloaded (file events and SIGHUP). A reload that keeps
// the limit keeps the counter: exactly the limit is admitted; a limit
// flipping between 20 and 30 admits no more than 30 (the counter is kept,
// never reset).
func TestHostileReloadUnderLoad(t *testing.T) {
	t.Parallel()
	hostileWindow()
	const base = `domains:
  - domain: hz
    descriptors:
      - key: remote_address
        rate_limit: {name: per-ip, unit: hour, requests_per_unit: %d}
      - key: c
        rate_limit: {name: per-c, unit: hour, requests_per_unit: %d}
      - key: other
        rate_limit: {unit: hour, requests_per_unit: %d}
authz:
  domain: hz
  client_ip: {trusted_hops: 1}
  api_keys: [{id: %s, key_sha256: %s}]
  descriptors:
    - entries: [{from: client_ip, missing: deny, deny_status: 403}]
`
	cfgOf := func(limit, version int) string {
		return fmt.Sprintf(base, limit, limit, 100+version, fmt.Sprintf("k%d", version), sha256Hex(fmt.Sprint(version)))
	}
	for _, be := range hostileBackends {
		for _, tc := range []struct {
			name   string
			limits []int // one config per reload; the first is served at start
			least  int
			most   int
		}{
			{"same limit, other changes", []int{20, 20, 20, 20, 20, 20, 20, 20}, 20, 20},
			{"limit flipping", []int{20, 30, 20, 30, 20, 30, 20, 30}, 20, 30},
		} {
			t.Run(be+"/"+tc.name, func(t *testing.T) {
				var be2 string
				if be == "redis" {
					srv := redistest.Start(t, redistest.Options{})
					be2 = "backends:\n  - type: redis\n    url: " + srv.URL() + "\nbreaker: {call_timeout: 2s}\n"
				}
				head := be2 + "failure_mode: closed\n"
				path := WriteFile(t, t.TempDir(), "extauthz.yaml", head+cfgOf(tc.limits[0], 0))
				p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
				h := startHammer(authzClient(t, p), rlsv3.NewRateLimitServiceClient(p.Dial(t)), freshPeer())
				for v, limit := range tc.limits[1:] {
					if err := reloadTo(t, p, path, head+cfgOf(limit, v+1), v%2 == 0); err != nil {
						h.halt()
						t.Fatalf("reload %d: %v; logs:\n%s", v+1, err, p.Logs())
					}
					time.Sleep(30 * time.Millisecond) // more calls under the new config
				}
				h.halt()
				if n := h.failed.Load(); n > 0 {
					t.Errorf("%d calls failed, first: %v", n, h.firstErr.Load())
				}
				for _, r := range []struct {
					api string
					n   int64
				}{{"check (per-ip)", h.checkOK.Load()}, {"ShouldRateLimit (per-c)", h.rlsOK.Load()}} {
					if r.n < int64(tc.least) || r.n > int64(tc.most) {
						t.Errorf("%s: %d admitted over %d reloads, want between %d and %d", r.api, r.n, len(tc.limits)-1, tc.least, tc.most)
					}
				}
			})
		}
	}
}

// reloadTo writes content to path, sends SIGHUP when sighup is set (else
// the file event reloads), and waits until the server reports one more
// successful reload.
func reloadTo(t *testing.T, p *Process, path, content string, sighup bool) error {
	t.Helper()
	const success = `extauthz_config_reloads_total{result="success"}`
	before := soakMetrics(t, p)[success]
	WriteFile(t, filepath.Dir(path), filepath.Base(path), content)
	if sighup {
		p.Signal(t, syscall.SIGHUP)
	}
	deadline := time.Now().Add(10 * time.Second)
	for soakMetrics(t, p)[success] <= before {
		if time.Now().After(deadline) {
			return errors.New("not applied within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// hammer keeps four clients calling one counter each API (two Check from
// one address, two ShouldRateLimit on c=reload) until halted, counting
// what was admitted.
type hammer struct {
	stop                   chan struct{}
	wg                     sync.WaitGroup
	checkOK, rlsOK, failed atomic.Int64
	firstErr               atomic.Value
}

func startHammer(c authv3.AuthorizationClient, rls rlsv3.RateLimitServiceClient, peer string) *hammer {
	h := &hammer{stop: make(chan struct{})}
	for w := range 4 {
		h.wg.Go(func() {
			for {
				select {
				case <-h.stop:
					return
				default:
				}
				h.call(w%2 == 0, c, rls, peer)
			}
		})
	}
	return h
}

func (h *hammer) call(check bool, c authv3.AuthorizationClient, rls rlsv3.RateLimitServiceClient, peer string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var err error
	if check {
		var resp *authv3.CheckResponse
		if resp, err = c.Check(ctx, envoyCheck(peer, "")); err == nil && resp.GetOkResponse() != nil {
			h.checkOK.Add(1)
		}
	} else {
		var resp *rlsv3.RateLimitResponse
		if resp, err = rls.ShouldRateLimit(ctx, rlsReq("hz", "c=reload")); err == nil && resp.GetOverallCode() == rlsv3.RateLimitResponse_OK {
			h.rlsOK.Add(1)
		}
	}
	if err != nil {
		h.failed.Add(1)
		h.firstErr.CompareAndSwap(nil, err.Error())
	}
}

// halt stops the clients and waits for them.
func (h *hammer) halt() {
	close(h.stop)
	h.wg.Wait()
}

// exampleConfig returns the content of a shipped example config
// (examples/...), with the Redis URL, when it has one, pointed at url.
func exampleConfig(t *testing.T, rel, redisURL string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(root + "/" + rel)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if redisURL != "" {
		if !strings.Contains(s, "url: redis://redis:6379/0") {
			t.Fatalf("%s: no redis url to replace", rel)
		}
		s = strings.Replace(s, "url: redis://redis:6379/0", "url: "+redisURL, 1)
		s = strings.Replace(s, "backends:", "breaker: {call_timeout: 2s}\nbackends:", 1)
	}
	return s
}

// TestHostileExampleRLS: examples/config.yaml (memory) and
// examples/envoy/extauthz.yaml (Redis) admit no more than their stated
// limits under the RateLimitService bypasses.
func TestHostileExampleRLS(t *testing.T) {
	t.Parallel()
	awayFromMinuteEnd(15 * time.Second)
	t.Run("examples/config.yaml", func(t *testing.T) {
		path := WriteFile(t, t.TempDir(), "config.yaml", exampleConfig(t, "examples/config.yaml", ""))
		p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
		rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
		t.Run("per-ip 60/min, hits 0 and an unlimited descriptor alongside", func(t *testing.T) {
			r := rlsCalls(t, rls, 80, func(i int) *rlsv3.RateLimitRequest {
				req := rlsReq("edge", "remote_address=10.7.0.1", "generic_key=healthz")
				req.HitsAddend = 0
				return req
			})
			expect(t, "one address", r, 60)
		})
		t.Run("a raw key is one unlisted key: 600/min, never the test-* rule", func(t *testing.T) {
			// The test-* pattern matches the canonical form (listed ids);
			// this file lists no key, so test-1 is hashed and unlisted.
			r := rlsCalls(t, rls, 610, func(int) *rlsv3.RateLimitRequest { return rlsReq("edge", "api_key=test-1") })
			expect(t, "one key, 610 calls", r, 600)
		})
		t.Run("exports share one bucket of 5 per user", func(t *testing.T) {
			start := time.Now()
			r := rlsCalls(t, rls, 20, func(i int) *rlsv3.RateLimitRequest {
				return rlsReq("edge", fmt.Sprintf("path=/api/v%d/export,user=mallory", i))
			})
			most := 5 + int(time.Since(start)/time.Second) + 1 // burst + refill of 1/s
			if len(r.errs) > 0 || r.admitted < 5 || r.admitted > most {
				t.Errorf("20 export paths of one user: %v; want between 5 and %d", r, most)
			}
		})
		t.Run("per-ip from the overall limit with duplicated descriptors", func(t *testing.T) {
			r := rlsCalls(t, rls, 40, func(int) *rlsv3.RateLimitRequest {
				return rlsReq("edge", "remote_address=10.7.0.2", "remote_address=10.7.0.2", "remote_address=10.7.0.2")
			})
			expect(t, "three copies per request", r, 20)
		})
	})
	t.Run("examples/envoy/extauthz.yaml", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		path := WriteFile(t, t.TempDir(), "extauthz.yaml", exampleConfig(t, "examples/envoy/extauthz.yaml", srv.URL()))
		p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
		rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
		t.Run("per-ip 100/min with a new tenant and key each time", func(t *testing.T) {
			r := rlsCalls(t, rls, 150, func(i int) *rlsv3.RateLimitRequest {
				return rlsReq("edge", "remote_address=10.8.0.1", fmt.Sprintf("tenant=t%d", i), fmt.Sprintf("api_key=k%d", i))
			})
			expect(t, "one address", r, 100)
		})
		t.Run("unlisted key 5/min", func(t *testing.T) {
			expect(t, "one unlisted key", rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return rlsReq("edge", "api_key=not-the-pro-key") }), 5)
		})
		t.Run("login 3/min per address", func(t *testing.T) {
			r := rlsCalls(t, rls, 10, func(i int) *rlsv3.RateLimitRequest {
				return rlsReq("edge", "header_match=login,remote_address=10.8.0.2", "remote_address=10.8.0.2")
			})
			expect(t, "logins of one address", r, 3)
		})
		t.Run("tenant 30/min sliding", func(t *testing.T) {
			expect(t, "one tenant", rlsCalls(t, rls, 40, func(int) *rlsv3.RateLimitRequest { return rlsReq("edge", "tenant=mallory") }), 30)
		})
	})
}

// TestHostileExampleAuthz: examples/envoy/ext_authz/extauthz-authz.yaml, as
// shipped, under the Check bypasses that do not involve the tenant header
// (those are in hostile_findings_test.go): per-ip 100/min, unlisted keys
// 5/min each.
func TestHostileExampleAuthz(t *testing.T) {
	t.Parallel()
	awayFromMinuteEnd(15 * time.Second)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", authzExample(t)}})
	c := authzClient(t, p)
	const limit = 100
	for _, tc := range []struct {
		name string
		mk   func(peer string, i int) *authv3.CheckRequest
		want int // 0: the per-ip limit
	}{
		{"spoofed X-Forwarded-For", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, fmt.Sprintf("203.0.%d.%d, ::ffff:10.0.0.%d, garbage", i/256, i%256, i%256))
		}, 0},
		{"X-Envoy-External-Address", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, "", "x-envoy-external-address", fmt.Sprintf("203.0.113.%d", i%256))
		}, 0},
		{"tier and upstream headers", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, "", "x-plan", fmt.Sprintf("enterprise%d", i), "x-tier", "pro", "x-tenant", fmt.Sprintf("t%d", i), "x-api-key-id", "acme-prod")
		}, 0},
		{"a new unlisted key each time", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, "", "x-api-key", fmt.Sprintf("key-%d", i))
		}, 0},
		{"a key id as a key", func(p string, i int) *authv3.CheckRequest {
			return envoyCheck(p, "", "authorization", "Bearer hobbyist")
		}, 5}, // an unlisted key, 5/min
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			peer := freshPeer()
			r := checks(t, c, 150, func(i int) *authv3.CheckRequest { return tc.mk(peer, i) })
			want := limit
			if tc.want != 0 {
				want = tc.want
			}
			expect(t, "one address", r, want)
		})
	}
	t.Run("an id as a key is an unlisted key", func(t *testing.T) {
		t.Parallel()
		r := checks(t, c, 10, func(int) *authv3.CheckRequest { return envoyCheck(freshPeer(), "", "x-api-key", "acme-prod") })
		expect(t, "x-api-key: acme-prod from many addresses", r, 5)
	})
	t.Run("listed free key: 120/min override, every form", func(t *testing.T) {
		t.Parallel()
		r := checks(t, c, 130, func(i int) *authv3.CheckRequest {
			f := [][2]string{{"authorization", "Bearer demo-free-key"}, {"authorization", "bearer  demo-free-key"}, {"x-api-key", " demo-free-key "}}[i%3]
			return envoyCheck(freshPeer(), "", f[0], f[1])
		})
		expect(t, "demo-free-key from many addresses", r, 120)
	})
}

// serveAccepts runs "extauthz serve" on path and reports whether it is
// still running (it accepted the config) after a few seconds, with its
// output.
func serveAccepts(t *testing.T, path string) (bool, string) {
	t.Helper()
	cmd := exec.Command(extauthzBin, "serve", "--config", path, "--grpc-addr", FreeAddr(t), "--http-addr", FreeAddr(t))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
		return false, out.String()
	case <-time.After(3 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return true, out.String()
	}
}

// validateRule is a server file with one rule of domain v on key k.
func validateRule(rl string) string {
	return "domains:\n  - domain: v\n    descriptors:\n      - key: k\n        rate_limit: " + rl + "\n"
}

// validateCase is a config that validate and serve must both reject.
type validateCase struct{ name, cfg string }

// runValidateServe checks that validate rejects each case's config with
// file:line:col, and that serve does not start on it: a config that
// validates always serves, and one that serve refuses never validates.
func runValidateServe(t *testing.T, cases []validateCase) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := WriteFile(t, t.TempDir(), "extauthz.yaml", tc.cfg)
			res := Run(t, extauthzBin, nil, "validate", "--config", path)
			if res.Code == 0 || !strings.Contains(res.Stderr+res.Stdout, path+":") {
				t.Errorf("validate: exit %d, output:\n%s%s\nwant an error at %s:line:col", res.Code, res.Stdout, res.Stderr, path)
			}
			if ok, out := serveAccepts(t, path); ok {
				t.Errorf("serve accepted it:\n%s", out)
			}
		})
	}
}

// TestHostileValidateServeBounds: bounds that validate already applies
// (each config loads as requests_per_unit fits a uint32 and serve agrees);
// the rest of finding 6 is TestHostileValidateServe in
// hostile_findings_test.go.
func TestHostileValidateServeBounds(t *testing.T) {
	t.Parallel()
	runValidateServe(t, []validateCase{
		{"tier requests_per_unit beyond 2^53", validateRule("{unit: minute, requests_per_unit: 5, tier_key: plan, tiers: {big: {unit: minute, requests_per_unit: 10000000000000000}}}")},
		{"requests_per_unit beyond 2^53", validateRule("{unit: minute, requests_per_unit: 10000000000000000}")},
		{"API key override beyond 2^53", validateRule("{name: per-k, unit: minute, requests_per_unit: 5}") + `authz:
  domain: v
  api_keys:
    - id: big
      key_sha256: ` + sha256Hex("big") + `
      overrides: [{rule: per-k, unit: minute, requests_per_unit: 10000000000000000}]
  descriptors:
    - entries: [{from: api_key, key: k}]
`},
	})
}
