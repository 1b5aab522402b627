package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"

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
	cfg, err := config.Load(bytes.NewReader(benchYAML("")), "bench.yaml")
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
	cfg, err := config.Load(bytes.NewReader(benchYAML("redis://127.0.0.1:6379/3")), "bench.yaml")
	if err != nil {
		t.Fatalf("bench.yaml with -redis: %v", err)
	}
	if len(cfg.Backends) != 1 || cfg.Backends[0].Type != "redis" || string(cfg.Backends[0].Redis.URL) != "redis://127.0.0.1:6379/3" {
		t.Errorf("got backends %+v, want one redis backend at the URL", cfg.Backends)
	}
	if !bytes.Equal(benchYAML(""), benchConfig) {
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
