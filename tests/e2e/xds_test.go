package e2e

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// xdsServer is a management server built from go-control-plane's SotW
// server and snapshot cache, on a loopback port.
type xdsServer struct {
	addr    string
	cache   cachev3.SnapshotCache
	first   chan struct{} // closed at the first request
	nacks   atomic.Int64
	started atomic.Bool
}

func startXDS(t *testing.T) *xdsServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	x := &xdsServer{addr: lis.Addr().String(), cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil), first: make(chan struct{})}
	cb := serverv3.CallbackFuncs{StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
		if x.started.CompareAndSwap(false, true) {
			close(x.first)
		}
		if req.GetErrorDetail() != nil {
			x.nacks.Add(1)
		}
		return nil
	}}
	g := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, serverv3.NewServer(context.Background(), x.cache, cb))
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return x
}

func (x *xdsServer) set(t *testing.T, version string, n uint32, unit rlsconfv3.RateLimitUnit) {
	t.Helper()
	rc := &rlsconfv3.RateLimitConfig{Name: "edge", Domain: "edge", Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: "remote_address", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: unit, RequestsPerUnit: n}},
	}}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.RateLimitConfigType: {rc}})
	if err != nil {
		t.Fatal(err)
	}
	if err := x.cache.SetSnapshot(context.Background(), "extauthz-e2e", snap); err != nil {
		t.Fatal(err)
	}
}

// TestServeRulesFromXDS runs the binary with rules_xds: it is ready only
// once the first update is applied, answers from the xDS rules, applies an
// update live, keeps the old rules on a bad update (NACK, counted), and
// keeps the xDS rules across a reload of the server file.
func TestServeRulesFromXDS(t *testing.T) {
	x := startXDS(t)
	dir := t.TempDir()
	serverFile := "rules_xds:\n  address: " + x.addr + "\n  node_id: extauthz-e2e\n  initial_backoff: 50ms\n  max_backoff: 200ms\n"
	cfg := WriteFile(t, dir, "extauthz.yaml", serverFile)
	var rulesSet atomic.Bool
	go func() {
		select {
		case <-x.first:
		case <-time.After(15 * time.Second):
			return
		}
		time.Sleep(300 * time.Millisecond) // the server is up, subscribed, without rules
		rulesSet.Store(true)
		x.set(t, "1", 2, rlsconfv3.RateLimitUnit_MINUTE)
	}()
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", cfg}})
	if !rulesSet.Load() {
		t.Fatal("/readyz answered 200 before the management server sent any rules")
	}
	// gRPC health (which Envoy may check) turned SERVING with the first update.
	hc := healthpb.NewHealthClient(p.Dial(t))
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gRPC health after the first update: %v, %v; want SERVING", resp.GetStatus(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	ask := func(ip string) *rlsv3.RateLimitResponse {
		t.Helper()
		resp, err := rls.ShouldRateLimit(context.Background(), &rlsv3.RateLimitRequest{Domain: "edge",
			Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", ip)}})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for i, want := range []rlsv3.RateLimitResponse_Code{rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OK, rlsv3.RateLimitResponse_OVER_LIMIT} {
		if got := ask("10.0.0.1").GetOverallCode(); got != want {
			t.Fatalf("request %d under version 1 (2 per minute): got %v, want %v", i+1, got, want)
		}
	}
	limitOf := func() uint32 { return ask("10.0.0.2").GetStatuses()[0].GetCurrentLimit().GetRequestsPerUnit() }
	waitLimit := func(want uint32) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for limitOf() != want {
			if time.Now().After(deadline) {
				t.Fatalf("limit still %d, want %d", limitOf(), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	x.set(t, "2", 5, rlsconfv3.RateLimitUnit_MINUTE)
	waitLimit(5)

	x.set(t, "3", 9, rlsconfv3.RateLimitUnit_UNKNOWN) // no unit: NACKed
	deadline = time.Now().Add(10 * time.Second)
	for x.nacks.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the bad update was not NACKed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := limitOf(); got != 5 {
		t.Errorf("after a bad update: limit %d, want the old 5", got)
	}
	if _, body := p.Get(t, "/metrics"); !strings.Contains(body, `extauthz_xds_updates_total{result="rejected"} 1`) ||
		!strings.Contains(body, `extauthz_xds_updates_total{result="applied"} 2`) || !strings.Contains(body, "extauthz_xds_connected 1") {
		t.Errorf("/metrics lacks the xDS updates (2 applied, 1 rejected) or the connection")
	}
	if !strings.Contains(p.Logs(), "xDS update rejected") || !strings.Contains(p.Logs(), "descriptors[0].rate_limit.unit") {
		t.Errorf("the rejection is not logged with its reason")
	}

	// A reload of the server file keeps the xDS rules.
	WriteFile(t, dir, "extauthz.yaml", serverFile+"over_limit_body: true\n")
	p.Signal(t, syscall.SIGHUP)
	deadline = time.Now().Add(10 * time.Second)
	for !strings.Contains(p.Logs(), "config reloaded") {
		if time.Now().After(deadline) {
			t.Fatal("the server file was not reloaded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := limitOf(); got != 5 {
		t.Errorf("after a reload of the server file: limit %d, want the xDS rules' 5", got)
	}
	if _, body := p.Get(t, "/config"); !strings.Contains(body, "rules_xds:") || !strings.Contains(body, "domain: edge") {
		t.Errorf("/config lacks rules_xds or the xDS domain:\n%s", body)
	}

	x.set(t, "4", 11, rlsconfv3.RateLimitUnit_HOUR)
	waitLimit(11)
}
