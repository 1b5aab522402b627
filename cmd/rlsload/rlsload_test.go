package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
)

func TestNoopServer(t *testing.T) {
	reqs := buildRequests(options{keys: 3, descriptors: 2, domain: "bench"})
	if len(reqs) != 3 || len(reqs[2].Descriptors) != 2 || reqs[2].Descriptors[0].Entries[0].Value != "10.0.0.2" {
		t.Fatalf("got requests %v, want 3 with 2 descriptors each", reqs)
	}
	resp, err := noopServer{}.ShouldRateLimit(context.Background(), reqs[0])
	if err != nil {
		t.Fatal(err)
	}
	if resp.OverallCode != rlsv3.RateLimitResponse_OK || len(resp.Statuses) != 2 || resp.Statuses[1].Code != rlsv3.RateLimitResponse_OK {
		t.Errorf("got %v, want OK with 2 OK statuses", resp)
	}
}

func TestMedian(t *testing.T) {
	rs := []runResult{{rps: 30, p50: 3}, {rps: 10, p50: 1}, {rps: 20, p50: 2}}
	if got := median(rs); got.rps != 20 || got.p50 != 2*time.Nanosecond {
		t.Errorf("got %+v, want the 20 req/s run", got)
	}
	if got := median(nil); got.rps != 0 {
		t.Errorf("median of nothing: got %+v", got)
	}
}

func TestNoopAuthz(t *testing.T) {
	checks := buildChecks(options{keys: 3, descriptors: 2})
	if len(checks) != 3 {
		t.Fatalf("got %d checks, want 3", len(checks))
	}
	h := checks[2].GetAttributes().GetRequest().GetHttp()
	if peer := checks[2].GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(); peer != "10.0.0.2" || h.GetPath() != "/api/2" || h.GetHeaders()["x-forwarded-for"] != "10.0.0.2" {
		t.Errorf("got peer %q, path %q, headers %v; want 10.0.0.2 and /api/2", peer, h.GetPath(), h.GetHeaders())
	}
	resp, err := noopAuthz{}.Check(context.Background(), checks[0])
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetStatus().GetCode() != 0 || resp.GetOkResponse() == nil {
		t.Errorf("got %v, want OK with an OkHttpResponse", resp)
	}
}

// TestBenchConfig runs the prebuilt requests of both APIs through the
// server on the embedded bench.yaml: every request is admitted, and both
// APIs count the same number of descriptors.
func TestBenchConfig(t *testing.T) {
	cfg, err := config.Load(bytes.NewReader(benchYAML("", "")), "bench.yaml")
	if err != nil {
		t.Fatalf("bench.yaml: %v", err)
	}
	for _, descriptors := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d descriptors", descriptors), func(t *testing.T) {
			o := options{keys: 20, descriptors: descriptors, domain: "bench"}
			reg := prometheus.NewRegistry()
			srv, authz := benchServer(t, cfg, reg)
			ctx := context.Background()
			for _, req := range buildRequests(o) {
				resp, err := srv.ShouldRateLimit(ctx, req)
				if err != nil || resp.GetOverallCode() != rlsv3.RateLimitResponse_OK {
					t.Fatalf("ShouldRateLimit: got %v, %v; want OK", resp, err)
				}
			}
			for _, req := range buildChecks(o) {
				resp, err := authz.Check(ctx, req)
				if err != nil || resp.GetOkResponse() == nil {
					t.Fatalf("Check: got %v, %v; want OK", resp, err)
				}
			}
			// Each request of either API counts one decision per
			// descriptor (remote_address, then path).
			want := float64(2 * o.keys * descriptors)
			if got := decisions(t, reg); got != want {
				t.Errorf("got %v counted decisions, want %v (%d per request of either API)", got, want, descriptors)
			}
		})
	}
}

func TestBenchYAMLRedis(t *testing.T) {
	cfg, err := config.Load(bytes.NewReader(benchYAML("redis://127.0.0.1:6379/3", "")), "bench.yaml")
	if err != nil {
		t.Fatalf("bench.yaml with -redis: %v", err)
	}
	if len(cfg.Backends) != 1 || cfg.Backends[0].Type != "redis" || string(cfg.Backends[0].Redis.URL) != "redis://127.0.0.1:6379/3" {
		t.Errorf("got backends %+v, want one redis backend at the URL", cfg.Backends)
	}
	if !bytes.Equal(benchYAML("", ""), benchConfig) {
		t.Error("benchYAML without -redis changed the embedded config")
	}
}

func TestDriveFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "unknown api", args: []string{"-api", "grpc"}, wantErr: `-api "grpc": want rls or authz`},
		{name: "redis and config", args: []string{"-redis", "redis://127.0.0.1:6379/0", "-config", "x.yaml"}, wantErr: "-redis and -config exclude each other"},
		{name: "unknown algorithm", args: []string{"-algorithm", "leaky_bucket"}, wantErr: `-algorithm "leaky_bucket": want fixed_window`},
		{name: "unknown target", args: []string{"-targets", "noop,redis"}, wantErr: `unknown target "redis"`},
		{name: "baseline without binary", args: []string{"-targets", "server,baseline"}, wantErr: "target baseline needs -baseline-bin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := drive(context.Background(), tc.args, io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("got %v, want an error containing %q", err, tc.wantErr)
			}
		})
	}
}

// benchServer returns the RateLimitService and Check handlers of cfg on a
// memory store, with metrics in reg.
func benchServer(t *testing.T, cfg *config.Config, reg *prometheus.Registry) (*server.Server, *server.Authz) {
	t.Helper()
	snap, err := server.NewSnapshot(cfg.Rules, server.Settings{Authz: &server.AuthzSettings{Extractor: cfg.Authz.Extractor()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := memstore.New(memstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	metrics, err := server.NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Store: mem, Metrics: metrics}, snap)
	if err != nil {
		t.Fatal(err)
	}
	authz, err := server.NewAuthz(srv)
	if err != nil {
		t.Fatal(err)
	}
	return srv, authz
}

// decisions sums extauthz_rule_decisions_total over every series.
func decisions(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "extauthz_rule_decisions_total" {
			for _, m := range mf.GetMetric() {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestBenchYAMLAlgorithm: -algorithm sets the default algorithm of the
// embedded rules, on either backend.
func TestBenchYAMLAlgorithm(t *testing.T) {
	for _, url := range []string{"", "redis://127.0.0.1:6379/3"} {
		for _, alg := range []string{"sliding_window", "token_bucket"} {
			cfg, err := config.Load(bytes.NewReader(benchYAML(url, alg)), "bench.yaml")
			if err != nil {
				t.Fatalf("bench.yaml with %q %q: %v", url, alg, err)
			}
			if got := cfg.DefaultAlgorithm.String(); got != alg {
				t.Errorf("url %q: got default algorithm %q, want %q", url, got, alg)
			}
			if got := len(cfg.Backends) == 1 && cfg.Backends[0].Type == "redis"; got != (url != "") {
				t.Errorf("url %q: got backends %+v", url, cfg.Backends)
			}
		}
	}
}

func TestCommandCounts(t *testing.T) {
	info := "# Commandstats\r\ncmdstat_evalsha:calls=10,usec=200,usec_per_call=20.00,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_get:calls=10,usec=5,usec_per_call=0.50\r\ncmdstat_info:calls=99,usec=5\r\ncmdstat_incrby:calls=7,usec=3\r\ncmdstat_bad:calls=x\r\n"
	all, scripts := commandCounts(info)
	if all != 27 || scripts != 10 {
		t.Errorf("got %d commands, %d scripts; want 27 (INFO and unparsable lines left out), 10", all, scripts)
	}
	if got := infoField("# Server\r\nredis_version:7.0.15\r\nprocess_id:4242\r\n", "process_id"); got != "4242" {
		t.Errorf("infoField: got %q, want 4242", got)
	}
}

func TestIOSyscalls(t *testing.T) {
	for _, tc := range []struct {
		text string
		want int64
	}{
		{"rchar: 10\nwchar: 5\nsyscr: 7\nsyscw: 3\nread_bytes: 0\n", 10},
		{"syscr: 7\n", -1},
		{"syscr: x\nsyscw: 3\n", -1},
		{"", -1},
	} {
		if got := ioSyscalls(tc.text); got != tc.want {
			t.Errorf("ioSyscalls(%q) = %d, want %d", tc.text, got, tc.want)
		}
	}
}

// TestSampleProc reads this process's CPU time, which a busy loop raises,
// and finds no process for pid 0.
func TestSampleProc(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc (not Linux)")
	}
	s0 := sampleProc(os.Getpid())
	deadline := time.Now().Add(50 * time.Millisecond)
	for time.Now().Before(deadline) {
	}
	s1 := sampleProc(os.Getpid())
	if !s0.ok || !s1.ok || s1.cpu <= s0.cpu {
		t.Errorf("got %+v then %+v, want readable samples with CPU time rising", s0, s1)
	}
	if sampleProc(0).ok {
		t.Error("pid 0: got a sample")
	}
	c := perDecision(s0, s1, &redisSample{proc: s0, commands: 10, evals: 5}, &redisSample{proc: s1, commands: 30, evals: 15}, 10)
	if !c.known || !c.redisKnown || c.redisCommands != 2 || c.redisScripts != 1 || c.serverCPU != (s1.cpu-s0.cpu)/10 {
		t.Errorf("perDecision: got %+v", c)
	}
}

// TestTake runs the take command's workloads on a real redis-server and
// counts the commands each sent.
func TestTake(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	ctx := context.Background()
	for _, tc := range []struct {
		args []string
		want map[string]int64
	}{
		{[]string{"-algorithm", "fixed_window"}, map[string]int64{"evalsha": 20, "incrby": 0}},
		{[]string{"-algorithm", "sliding_window", "-general"}, map[string]int64{"evalsha": 20}},
		{[]string{"-algorithm", "token_bucket"}, map[string]int64{"evalsha": 20}},
		{[]string{"-raw", "incr"}, map[string]int64{"incrby": 20, "pexpire": 20, "evalsha": 0}},
		{[]string{"-raw", "ping"}, map[string]int64{"ping": 20}},
	} {
		before, err := srv.CommandStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := run(ctx, append([]string{"take", "-redis-addr", srv.Addr, "-n", "20"}, tc.args...), io.Discard, io.Discard); err != nil {
			t.Fatalf("take %v: %v", tc.args, err)
		}
		after, err := srv.CommandStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for cmd, want := range tc.want {
			if got := after[cmd] - before[cmd]; got != want {
				t.Errorf("take %v: %d %s calls, want %d", tc.args, got, cmd, want)
			}
		}
	}
	for _, args := range [][]string{{}, {"-redis-addr", srv.Addr, "-algorithm", "leaky"}, {"-redis-addr", srv.Addr, "-raw", "get"}, {"-redis-addr", srv.Addr, "-n", "0"}} {
		if err := run(ctx, append([]string{"take"}, args...), io.Discard, io.Discard); err == nil {
			t.Errorf("take %v: no error", args)
		}
	}
}
