package e2e

// Adversarial cases for issue 16's findings 1, 2, 6, 8 and 10 (tenant
// headers, ids for keys, validate vs serve, keys in clear, one reload
// snapshot) and for the bypasses this suite found beyond them (non-UTF-8
// values, the IPv6 example, memory eviction, a missing client address,
// RLS fail-open). Each failed before its fix.

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/extauthz/extauthz/internal/redistest"
)

// TestHostileTenantHeader (finding 1): a tenant a client names in a header
// is not trusted: it neither escapes the per-ip limit nor borrows a listed
// tenant's tier or quota, and the Host (host: listed) picks a tenant's tier
// and quota but never namespaces the per-ip counter.
func TestHostileTenantHeader(t *testing.T) {
	t.Parallel()
	awayFromMinuteEnd(15 * time.Second)
	// The shipped example, with the IETF RateLimit field on so that the
	// per-tenant counter's remaining shows.
	cfg := strings.Replace(exampleConfig(t, "examples/envoy/ext_authz/extauthz-authz.yaml", ""), "draft: false", "draft: true", 1)
	path := WriteFile(t, t.TempDir(), "extauthz-authz.yaml", cfg)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	c := authzClient(t, p)

	t.Run("a new x-tenant-id each time, one address", func(t *testing.T) {
		peer := freshPeer()
		r := checks(t, c, 150, func(i int) *authv3.CheckRequest { return envoyCheck(peer, "", "x-tenant-id", fmt.Sprintf("t%d", i)) })
		expect(t, "one address", r, 100)
	})
	t.Run("x-tenant-id: acme without a key", func(t *testing.T) {
		r := checks(t, c, 10, func(int) *authv3.CheckRequest { return envoyCheck(freshPeer(), "", "x-tenant-id", "acme") })
		expect(t, "acme by header", r, 10)
		resp, err := c.Check(context.Background(), envoyCheck(freshPeer(), "", "x-tenant-id", "acme"))
		if err != nil {
			t.Fatal(err)
		}
		up := authzHeaders(resp.GetOkResponse().GetHeaders())
		if up["x-plan"] != "" || up["x-tenant"] == "acme" {
			t.Errorf("upstream headers %v: a client-sent x-tenant-id got acme's tenant or tier", up)
		}
		// acme's own quota (per-tenant, 3000/min for enterprise) is
		// untouched: the pro key's first request (tenant acme) sees 2999.
		resp, err = c.Check(context.Background(), envoyCheck(freshPeer(), "", "authorization", "Bearer demo-pro-key"))
		if err != nil {
			t.Fatal(err)
		}
		rl := authzHeaders(resp.GetOkResponse().GetResponseHeadersToAdd())["ratelimit"]
		if !strings.Contains(rl, `"per-tenant";r=2999;`) {
			t.Errorf("RateLimit %q after 11 requests naming acme by header: want per-tenant r=2999 (acme's quota untouched)", rl)
		}
	})
	t.Run("alternating Host between a listed tenant's and another, one address", func(t *testing.T) {
		peer := freshPeer()
		r := checks(t, c, 150, func(i int) *authv3.CheckRequest {
			req := envoyCheck(peer, "")
			if i%2 == 0 {
				req.Attributes.Request.Http.Host = "acme.localhost"
			}
			return req
		})
		expect(t, "one address, two hosts", r, 100)
	})
	t.Run("an untrusted tenant header source is a config error", func(t *testing.T) {
		const tmpl = `domains:
  - domain: d
    descriptors:
      - key: tenant
        rate_limit: {unit: minute, requests_per_unit: 5}
authz:
  domain: d
  tenant:
    sources: [%s]
  descriptors:
    - entries: [{from: tenant}]
`
		file := WriteFile(t, t.TempDir(), "untrusted.yaml", fmt.Sprintf(tmpl, "{header: x-tenant-id}"))
		res := Run(t, extauthzBin, nil, "validate", "--config", file)
		if res.Code == 0 || !strings.Contains(res.Stderr+res.Stdout, "trusted: true") {
			t.Errorf("validate of a config with {header: x-tenant-id} (no trusted: true): exit %d\n%s%s\nwant an error saying to set trusted: true", res.Code, res.Stdout, res.Stderr)
		}
		if ok, out := serveAccepts(t, file); ok {
			t.Errorf("serve accepted a config with an untrusted tenant header source:\n%s", out)
		}
		file = WriteFile(t, t.TempDir(), "trusted.yaml", fmt.Sprintf(tmpl, "{header: x-tenant-id, trusted: true}"))
		if res := Run(t, extauthzBin, nil, "validate", "--config", file); res.Code != 0 {
			t.Errorf("validate with trusted: true: exit %d\n%s", res.Code, res.Stderr)
		}
	})
}

// TestHostileRLSKeyIDs (finding 2): on ShouldRateLimit, the api_key
// descriptor is the raw key as Envoy's request_headers action sends it,
// matched by digest only; a listed key's id is an unlisted key.
func TestHostileRLSKeyIDs(t *testing.T) {
	t.Parallel()
	awayFromMinuteEnd(15 * time.Second)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", authzExample(t)}})
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	limitOf := func(key string) uint32 {
		t.Helper()
		resp, err := rls.ShouldRateLimit(context.Background(), rlsReq("edge_authz", "api_key="+key))
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit()
	}
	t.Run("ids are unlisted keys", func(t *testing.T) {
		for _, id := range []string{"acme-prod", "hobbyist"} {
			r := rlsCalls(t, rls, 10, func(int) *rlsv3.RateLimitRequest { return rlsReq("edge_authz", "api_key="+id) })
			expect(t, "api_key="+id, r, 5)
		}
	})
	t.Run("raw keys get their tier", func(t *testing.T) {
		if got := limitOf("demo-pro-key"); got != 1000 {
			t.Errorf("api_key=demo-pro-key: limit %d, want the pro tier's 1000", got)
		}
		if got := limitOf("demo-free-key"); got != 120 {
			t.Errorf("api_key=demo-free-key: limit %d, want hobbyist's override 120", got)
		}
	})
}

// TestHostileKeysInClear (finding 8): a raw API key, listed or not, sent on
// either API or written in a rule file, never shows on /metrics, /config or
// in the logs (debug level).
func TestHostileKeysInClear(t *testing.T) {
	t.Parallel()
	const unlisted = "raw-unlisted-key-7f3a"
	look := func(t *testing.T, p *Process, secrets ...string) {
		t.Helper()
		_, metrics := p.Get(t, "/metrics")
		_, cfg := p.Get(t, "/config")
		for _, s := range secrets {
			for where, text := range map[string]string{"/metrics": metrics, "/config": cfg, "the logs": p.Logs()} {
				for _, line := range strings.Split(text, "\n") {
					if strings.Contains(line, s) {
						t.Errorf("%s shows the key %q: %s", where, s, line)
						break
					}
				}
			}
		}
	}
	t.Run("ext_authz example, both APIs", func(t *testing.T) {
		cfg := exampleConfig(t, "examples/envoy/ext_authz/extauthz-authz.yaml", "") + "\nlog: {level: debug}\n"
		path := WriteFile(t, t.TempDir(), "extauthz-authz.yaml", cfg)
		p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
		c := authzClient(t, p)
		rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
		checks(t, c, 8, func(i int) *authv3.CheckRequest {
			return envoyCheck(freshPeer(), "", "x-api-key", []string{"demo-pro-key", unlisted}[i%2])
		})
		rlsCalls(t, rls, 8, func(i int) *rlsv3.RateLimitRequest {
			return rlsReq("edge_authz", "api_key="+[]string{"demo-pro-key", unlisted, "demo-free-key"}[i%3])
		})
		look(t, p, "demo-pro-key", "demo-free-key", unlisted)
	})
	t.Run("examples/envoy/extauthz.yaml: a key in the rule file", func(t *testing.T) {
		srv := redistest.Start(t, redistest.Options{})
		cfg := exampleConfig(t, "examples/envoy/extauthz.yaml", srv.URL()) + "\nlog: {level: debug}\n"
		path := WriteFile(t, t.TempDir(), "extauthz.yaml", cfg)
		p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
		rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
		rlsCalls(t, rls, 8, func(i int) *rlsv3.RateLimitRequest {
			return rlsReq("edge", "api_key="+[]string{"demo-pro-key", unlisted}[i%2])
		})
		look(t, p, "demo-pro-key", unlisted)
	})
}

// TestHostileValidateServe (finding 6): what serve or a backend would
// reject, validate rejects, with file:line:col; serve rejects it too.
// hostile_test.go's TestHostileValidateServeBounds has the bounds already
// checked.
func TestHostileValidateServe(t *testing.T) {
	t.Parallel()
	runValidateServe(t, []validateCase{
		{"tier burst beyond 2^53", validateRule("{unit: minute, requests_per_unit: 5, algorithm: token_bucket, tier_key: plan, tiers: {big: {unit: minute, requests_per_unit: 5, burst: 10000000000000000}}}")},
		{"limits.max_hits_addend beyond 2^53", validateRule("{unit: minute, requests_per_unit: 5}") + "limits: {max_hits_addend: 9007199254740993}\n"},
		{"memory max_keys of a trillion", "backends:\n  - type: memory\n    max_keys: 1000000000000\n" + validateRule("{unit: minute, requests_per_unit: 5}")},
		{"token bucket beyond the tolerance cap", validateRule("{unit: year, requests_per_unit: 10, algorithm: token_bucket, burst: 5000}")},
	})
}

// TestHostileReloadSnapshot (finding 10): Check reads the rules and its
// extractor from one snapshot. Two configs name the client address with
// different descriptor keys, each with its own rule; a Check that paired
// one config's extractor with the other's rules would match nothing and be
// admitted without any limit (no X-RateLimit-Limit). Clients hammer while
// the configs alternate. The race is narrow: passing does not prove the
// snapshot (pkg/server TestAuthzReadsOneSnapshot does), failing proves its
// absence.
func TestHostileReloadSnapshot(t *testing.T) {
	t.Parallel()
	const cfgOf = `response_headers: {enabled: true}
domains:
  - domain: hz
    descriptors:
      - key: ip_%[1]s
        rate_limit: {unit: hour, requests_per_unit: 1000}
authz:
  domain: hz
  client_ip: {trusted_hops: 1}
  descriptors:
    - entries: [{from: client_ip, key: ip_%[1]s, missing: deny, deny_status: 403}]
`
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", fmt.Sprintf(cfgOf, "a"))
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	c := authzClient(t, p)
	var unlimited, calls, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Check(context.Background(), envoyCheck(freshPeer(), ""))
				calls.Add(1)
				switch {
				case err != nil:
					failed.Add(1)
				case resp.GetOkResponse() != nil && authzHeaders(resp.GetOkResponse().GetResponseHeadersToAdd())["x-ratelimit-limit"] == "":
					unlimited.Add(1)
				}
			}
		})
	}
	for i := range 40 {
		if err := reloadTo(t, p, path, fmt.Sprintf(cfgOf, []string{"b", "a"}[i%2]), true); err != nil {
			close(stop)
			wg.Wait()
			t.Fatalf("reload %d: %v", i+1, err)
		}
	}
	close(stop)
	wg.Wait()
	if n := unlimited.Load(); n > 0 || failed.Load() > 0 {
		t.Errorf("%d of %d Checks matched no rule (an extractor paired with another config's rules), %d failed", n, calls.Load(), failed.Load())
	}
	t.Logf("%d Checks over 40 reloads", calls.Load())
}

// rawCodec sends and receives protobuf bytes as they are, so that a test
// can send what grpc-go's client would refuse to marshal (strings that are
// not UTF-8, which Envoy's C++ client does send).
type rawCodec struct{}

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}

func (rawCodec) Name() string { return "proto" }

// badUTF8 replaces hostileMark in a marshalled message: the same length, so
// every length prefix stays right.
const (
	hostileMark = "@@MARK@@"
	badUTF8     = "\xff\xfebad\xc3(!"
)

// invokeRaw marshals req, replaces hostileMark with bytes that are not
// UTF-8, calls method and unmarshals the answer into resp.
func invokeRaw(conn *grpc.ClientConn, method string, req, resp proto.Message) error {
	b, err := proto.Marshal(req)
	if err != nil {
		return err
	}
	if len(badUTF8) != len(hostileMark) || !bytes.Contains(b, []byte(hostileMark)) {
		return fmt.Errorf("no mark in the request")
	}
	b = bytes.ReplaceAll(b, []byte(hostileMark), []byte(badUTF8))
	var out []byte
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Invoke(ctx, method, &b, &out, grpc.ForceCodecV2(rawCodec{})); err != nil {
		return err
	}
	return proto.Unmarshal(out, resp)
}

// TestHostileNonUTF8 (found by this suite, not among issue 16's findings;
// fixed by the server's UTF-8 scrubbing codec):
// Envoy's request_headers action copies a header's bytes into a descriptor
// value, and HTTP/1.1 allows bytes 0x80-0xFF in header values; Envoy's C++
// protobuf serialises them. grpc-go's server refuses such a string while
// unmarshalling and answers INTERNAL before ShouldRateLimit runs, so every
// descriptor of the request goes unlimited (Envoy's rate limit filter
// allows on error unless failure_mode_deny). A request must be refused with
// InvalidArgument or counted, never INTERNAL. The same for a direct Check
// whose headers map carries such bytes (Envoy itself replaces them with
// '!' there).
func TestHostileNonUTF8(t *testing.T) {
	t.Parallel()
	hostileWindow()
	for _, be := range hostileBackends {
		t.Run(be, func(t *testing.T) {
			p := hostileStart(t, be, hostileRules+hostileAuthz(hostileHops1, hostileIPDeny))
			conn := p.Dial(t)
			judge := func(t *testing.T, what string, r tally, want int) {
				t.Helper()
				if r.errs[codes.Internal] > 0 || r.admitted > want || len(r.errs) > r.errs[codes.InvalidArgument] {
					t.Errorf("%s: %v; want InvalidArgument or at most %d admitted, never INTERNAL", what, r, want)
				} else if len(r.errs) == 0 && r.admitted != want {
					t.Errorf("%s: %v; counted, want exactly %d admitted", what, r, want)
				}
			}
			t.Run("rls: per-ip with a header value that is not UTF-8", func(t *testing.T) {
				var r tally
				for range 10 {
					var resp rlsv3.RateLimitResponse
					err := invokeRaw(conn, "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
						rlsReq("hz", "remote_address=10.66.0.1", "user="+hostileMark), &resp)
					switch {
					case err != nil:
						r.fail(err)
					case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
						r.admitted++
					default:
						r.refused++
					}
				}
				judge(t, "remote_address + a non-UTF-8 user", r, 3)
			})
			t.Run("rls: a key that is not UTF-8", func(t *testing.T) {
				var r tally
				for range 10 {
					var resp rlsv3.RateLimitResponse
					err := invokeRaw(conn, "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit",
						rlsReq("hz", "remote_address=10.66.0.2", hostileMark+"=v"), &resp)
					switch {
					case err != nil:
						r.fail(err)
					case resp.GetOverallCode() == rlsv3.RateLimitResponse_OK:
						r.admitted++
					default:
						r.refused++
					}
				}
				judge(t, "remote_address + a non-UTF-8 key", r, 5)
			})
			t.Run("check: headers map value that is not UTF-8", func(t *testing.T) {
				peer := freshPeer()
				var r tally
				for range 10 {
					var resp authv3.CheckResponse
					err := invokeRaw(conn, "/envoy.service.auth.v3.Authorization/Check", envoyCheck(peer, "", "x-user", "check"+hostileMark), &resp)
					switch {
					case err != nil:
						r.fail(err)
					case codes.Code(resp.GetStatus().GetCode()) == codes.OK && resp.GetOkResponse() != nil:
						r.admitted++
					default:
						r.refused++
					}
				}
				// "check" keeps this x-user apart from the first subtest's user,
				// which shares domain hz's per-user counter and is spent.
				judge(t, "one address, a non-UTF-8 x-user", r, 3)
			})
		})
	}
}

// TestHostileExampleIPv6 (found by this suite, not among issue 16's
// findings): the shipped ext_authz example limits "every client IP" to 100
// a minute, each IPv6 address on its own (no v6_mask), while one IPv6
// client usually holds a whole /64 (2^64 addresses): rotating addresses
// escapes the per-ip limit. Counting IPv6 clients by /64 (v6_mask: 64 on
// the per-ip entry, as TestHostileClientIPTrust shows working) closes it.
func TestHostileExampleIPv6(t *testing.T) {
	t.Parallel()
	awayFromMinuteEnd(10 * time.Second)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", authzExample(t)}})
	r := checks(t, authzClient(t, p), 150, func(i int) *authv3.CheckRequest {
		return envoyCheck(fmt.Sprintf("2001:db8:5:6:%x:%x::1", i/256, i%256), "")
	})
	expect(t, "150 addresses of one /64", r, 100)
}

// TestHostileMemoryEviction (found by this suite, not among issue 16's
// findings): the memory backend holds at most max_keys counters and, when
// a shard is full, evicts the sampled counter that expires soonest,
// forgetting its hits (documented as failing open "for the evicted keys").
// One client can use that to reset its own per-ip counter: every request,
// even a refused one, creates a counter for a fresh value of another
// descriptor (count_mode: all counts every matched descriptor), whose
// longer window outlives the per-ip counter, which is then evicted. Here:
// per-ip 5/hour, per-user 5/day, max_keys 1024, one address sending a new
// x-user each time.
func TestHostileMemoryEviction(t *testing.T) {
	t.Parallel()
	hostileWindow()
	cfg := strings.Replace(hostileRules, "{name: per-user, unit: hour, requests_per_unit: 3}", "{name: per-user, unit: day, requests_per_unit: 3}", 1)
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", "backends:\n  - type: memory\n    max_keys: 1024\n"+cfg+hostileAuthz(hostileHops1, hostileIPDeny))
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	peer := freshPeer()
	r := checks(t, authzClient(t, p), 4000, func(i int) *authv3.CheckRequest {
		return envoyCheck(peer, "", "x-user", fmt.Sprintf("u%d", i))
	})
	expect(t, "one address, a new x-user each time", r, 5)
}

// TestHostileClientIPMissing (found by this suite, not among issue 16's
// findings): an entry's missing policy defaults to skip, also for
// client_ip, so a request whose address cannot be found is not limited per
// address at all. With trusted_hops: 2 (a load balancer in front of Envoy),
// a client that reaches Envoy directly sends no X-Forwarded-For: Envoy's
// single entry is too short, the per-ip descriptor is skipped and the
// client is unlimited. A client address that cannot be found should deny
// (or count in one shared bucket) unless the config says otherwise.
func TestHostileClientIPMissing(t *testing.T) {
	t.Parallel()
	hostileWindow()
	p := hostileStart(t, "memory", hostileRules+hostileAuthz("    trusted_hops: 2", "{from: client_ip}"))
	peer := freshPeer()
	r := checks(t, authzClient(t, p), 12, func(int) *authv3.CheckRequest { return envoyCheck(peer, "") })
	if r.admitted > 5 || len(r.errs) > 0 {
		t.Errorf("one client reaching Envoy directly (one X-Forwarded-For entry, trusted_hops: 2): %v; want at most 5 admitted", r)
	}
}

// TestHostileRLSFailOpen (found by this suite, not among issue 16's
// findings): behind the shipped Envoy example (examples/envoy/envoy.yaml:
// request_headers actions copy x-api-key and x-tenant-id into descriptors,
// failure_mode_deny: false), any error answer lets the request through
// uncounted. A client-chosen header value longer than
// limits.max_value_length (4096; Envoy accepts headers up to 60 KiB) answers
// InvalidArgument, so the per-ip descriptor of the same request is never
// counted: the client is unlimited. Here an error counts as admitted, as
// Envoy treats it; values beyond the bound must be counted (e.g. hashed,
// as authz.max_value_bytes does on the Check path) so that per-ip holds.
func TestHostileRLSFailOpen(t *testing.T) {
	t.Parallel()
	awayFromMinuteEnd(15 * time.Second)
	srv := redistest.Start(t, redistest.Options{})
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", exampleConfig(t, "examples/envoy/extauthz.yaml", srv.URL()))
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	long := strings.Repeat("k", 5000)
	r := rlsCalls(t, rls, 150, func(i int) *rlsv3.RateLimitRequest {
		return rlsReq("edge", "remote_address=10.8.1.1", fmt.Sprintf("api_key=%s%d", long, i), "generic_key=edge-global")
	})
	errs := 0
	for _, n := range r.errs {
		errs += n
	}
	if through := r.admitted + errs; through > 100 || errs > 0 {
		t.Errorf("one address with a 5000-byte x-api-key: %v; %d let through by Envoy (errors fail open), want exactly 100 admitted and no error", r, through)
	}
}
