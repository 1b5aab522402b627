package xdsrules_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/secret"
	"github.com/extauthz/extauthz/pkg/xdsrules"
)

const nodeID = "node-a"

// mgmt is a real xDS management server (go-control-plane's SotW server
// over a snapshot cache) on a loopback port; it records every request its
// clients send.
type mgmt struct {
	cache cachev3.SnapshotCache
	addr  string
	g     *grpc.Server
	reqs  chan *discoverygrpc.DiscoveryRequest
	// headers are the metadata of the last stream opened.
	headers atomic.Pointer[metadata.MD]
	// nonces maps the nonce of each response sent to its version.
	nonces sync.Map
	// nacks counts the NACKs received.
	nacks atomic.Int64
	done  chan struct{}
}

// startMgmt serves cache at addr ("127.0.0.1:0" for any port).
func startMgmt(t *testing.T, addr string, cache cachev3.SnapshotCache) *mgmt {
	t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // a restarted server may wait for its port
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	m := &mgmt{cache: cache, addr: lis.Addr().String(), g: grpc.NewServer(), reqs: make(chan *discoverygrpc.DiscoveryRequest, 100), done: make(chan struct{})}
	cb := serverv3.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, _ int64, _ string) error {
			md, _ := metadata.FromIncomingContext(ctx)
			m.headers.Store(&md)
			return nil
		},
		StreamResponseFunc: func(_ context.Context, _ int64, _ *discoverygrpc.DiscoveryRequest, resp *discoverygrpc.DiscoveryResponse) {
			m.nonces.Store(resp.GetNonce(), resp.GetVersionInfo())
		},
		StreamRequestFunc: func(_ int64, req *discoverygrpc.DiscoveryRequest) error {
			if req.GetErrorDetail() != nil {
				m.nacks.Add(1)
			}
			select {
			case m.reqs <- req:
			default:
			}
			return nil
		},
	}
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(m.g, serverv3.NewServer(context.Background(), cache, cb))
	go func() {
		defer close(m.done)
		_ = m.g.Serve(lis)
	}()
	t.Cleanup(m.stop)
	return m
}

func (m *mgmt) stop() {
	m.g.Stop()
	<-m.done
}

// set serves configs as version for nodeID.
func (m *mgmt) set(t *testing.T, version string, configs ...*rlsconfv3.RateLimitConfig) {
	t.Helper()
	res := make([]types.Resource, len(configs))
	for i, c := range configs {
		res[i] = c
	}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{resource.RateLimitConfigType: res})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		t.Fatal(err)
	}
}

// waitReq waits for a request the client sends that ok accepts.
func (m *mgmt) waitReq(t *testing.T, what string, ok func(*discoverygrpc.DiscoveryRequest) bool) *discoverygrpc.DiscoveryRequest {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r := <-m.reqs:
			if ok(r) {
				return r
			}
		case <-timeout:
			t.Fatalf("timed out waiting for the client's %s", what)
			return nil
		}
	}
}

// answers reports whether r answers a response of version.
func (m *mgmt) answers(r *discoverygrpc.DiscoveryRequest, version string) bool {
	v, ok := m.nonces.Load(r.GetResponseNonce())
	return ok && v == version
}

// waitACK waits for the client's answer to version, which must be an ACK.
func (m *mgmt) waitACK(t *testing.T, version string) {
	t.Helper()
	r := m.waitReq(t, "answer to version "+version, func(r *discoverygrpc.DiscoveryRequest) bool { return m.answers(r, version) })
	if r.GetErrorDetail() != nil || r.GetVersionInfo() != version {
		t.Fatalf("answer to version %s: got version_info %q, error_detail %q; want an ACK", version, r.GetVersionInfo(), r.GetErrorDetail().GetMessage())
	}
}

// waitNACK waits for the client's answer to version, which must be a NACK.
func (m *mgmt) waitNACK(t *testing.T, version string) *discoverygrpc.DiscoveryRequest {
	t.Helper()
	r := m.waitReq(t, "answer to version "+version, func(r *discoverygrpc.DiscoveryRequest) bool { return m.answers(r, version) })
	if r.GetErrorDetail() == nil {
		t.Fatalf("answer to version %s: got an ACK (version_info %q), want a NACK", version, r.GetVersionInfo())
	}
	return r
}

// installer applies updates as serve does: compiled by config.WithXDSRules
// over a server file, swapped in whole.
type installer struct {
	cfg   *config.Config
	rules atomic.Pointer[descriptor.Set]
}

func newInstaller(t *testing.T) *installer {
	t.Helper()
	cfg, err := config.Load(strings.NewReader("rules_xds: {address: 127.0.0.1:1}\n"), "server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	in := &installer{cfg: cfg}
	in.rules.Store(cfg.Rules)
	return in
}

func (in *installer) apply(_ context.Context, u xdsrules.Update) error {
	c, err := in.cfg.WithXDSRules(u.Configs)
	if err != nil {
		return err
	}
	in.rules.Store(c.Rules)
	return nil
}

// limit returns the requests per unit of domain's rule for key=value, or
// -1 when none matches.
func (in *installer) limit(domain, key, value string) int64 {
	r, ok := in.rules.Load().Match(domain, descriptor.Descriptor{{Key: key, Value: value}})
	if !ok {
		return -1
	}
	return r.Limit.Requests
}

func rule(domain, key string, unit rlsconfv3.RateLimitUnit, n uint32) *rlsconfv3.RateLimitConfig {
	return &rlsconfv3.RateLimitConfig{Name: domain + "/" + key, Domain: domain, Descriptors: []*rlsconfv3.RateLimitDescriptor{
		{Key: key, RateLimit: &rlsconfv3.RateLimitPolicy{Unit: unit, RequestsPerUnit: n}},
	}}
}

// client runs a client of addr until the test ends.
func client(t *testing.T, s xdsrules.Settings, in *installer, reg prometheus.Registerer) *xdsrules.Client {
	t.Helper()
	s.NodeID = nodeID
	if s.InitialBackoff == 0 {
		s.InitialBackoff, s.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	}
	var m *xdsrules.Metrics
	if reg != nil {
		var err error
		if m, err = xdsrules.NewMetrics(reg); err != nil {
			t.Fatal(err)
		}
	}
	c, err := xdsrules.New(s, xdsrules.Options{Apply: in.apply, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	return c
}

func TestUpdates(t *testing.T) {
	m := startMgmt(t, "127.0.0.1:0", cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil))
	in := newInstaller(t)
	reg := prometheus.NewRegistry()
	c := client(t, xdsrules.Settings{Address: m.addr, NodeMetadata: map[string]string{"zone": "eu-1"}, Headers: map[string]secret.String{"x-token": "s3cret"}}, in, reg)
	if err := c.Ready(); err == nil {
		t.Fatal("Ready before any update: got nil, want an error")
	}

	m.set(t, "1", rule("edge", "a", rlsconfv3.RateLimitUnit_MINUTE, 10))
	first := m.waitReq(t, "first request", func(*discoverygrpc.DiscoveryRequest) bool { return true })
	if got := first.GetNode().GetMetadata().GetFields()["zone"].GetStringValue(); got != "eu-1" {
		t.Errorf("node metadata zone: got %q, want eu-1", got)
	}
	if got := first.GetTypeUrl(); got != resource.RateLimitConfigType {
		t.Errorf("type URL: got %q, want %q", got, resource.RateLimitConfigType)
	}
	if md := m.headers.Load(); md == nil || strings.Join((*md)["x-token"], ",") != "s3cret" {
		t.Errorf("stream metadata x-token: got %v, want s3cret", md)
	}
	m.waitACK(t, "1")
	if got := in.limit("edge", "a", ""); got != 10 {
		t.Fatalf("after version 1: limit %d, want 10", got)
	}
	if err := c.Ready(); err != nil {
		t.Errorf("Ready after an update: %v", err)
	}

	m.set(t, "2", rule("edge", "a", rlsconfv3.RateLimitUnit_MINUTE, 20), rule("api", "b", rlsconfv3.RateLimitUnit_SECOND, 5))
	m.waitACK(t, "2")
	if got, got2 := in.limit("edge", "a", ""), in.limit("api", "b", ""); got != 20 || got2 != 5 {
		t.Fatalf("after version 2: limits %d and %d, want 20 and 5", got, got2)
	}

	bad := []struct {
		name    string
		configs []*rlsconfv3.RateLimitConfig
		wantMsg string
	}{
		{name: "unit UNKNOWN", configs: []*rlsconfv3.RateLimitConfig{rule("edge", "a", rlsconfv3.RateLimitUnit_UNKNOWN, 3)}, wantMsg: "unit"},
		{name: "unit out of range", configs: []*rlsconfv3.RateLimitConfig{rule("edge", "a", rlsconfv3.RateLimitUnit(42), 3)}, wantMsg: "42"},
		{name: "duplicate key", configs: []*rlsconfv3.RateLimitConfig{{Name: "edge", Domain: "edge", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: "a", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_SECOND, RequestsPerUnit: 1}},
			{Key: "a", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_SECOND, RequestsPerUnit: 2}},
		}}}, wantMsg: "duplicate descriptor"},
		{name: "duplicate domain", configs: []*rlsconfv3.RateLimitConfig{rule("edge", "a", rlsconfv3.RateLimitUnit_SECOND, 1), rule("edge", "b", rlsconfv3.RateLimitUnit_SECOND, 1)}, wantMsg: "duplicate domain"},
		{name: "empty domain", configs: []*rlsconfv3.RateLimitConfig{rule("", "a", rlsconfv3.RateLimitUnit_SECOND, 1)}, wantMsg: "domain"},
	}
	for i, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			version := "bad" + string(rune('a'+i))
			m.set(t, version, tc.configs...)
			nack := m.waitNACK(t, version)
			if msg := nack.GetErrorDetail().GetMessage(); !strings.Contains(msg, tc.wantMsg) {
				t.Errorf("NACK error_detail: got %q, want it to contain %q", msg, tc.wantMsg)
			}
			if got := nack.GetVersionInfo(); got != "2" {
				t.Errorf("NACK version_info: got %q, want the version applied, 2", got)
			}
			if got := in.limit("edge", "a", ""); got != 20 {
				t.Errorf("after a bad update: limit %d, want the old 20", got)
			}
		})
	}
	// go-control-plane's cache sends a NACKed version again at once: the
	// client's NACKs back off (20ms doubling to 100ms here) instead of
	// spinning.
	before := m.nacks.Load()
	time.Sleep(500 * time.Millisecond)
	if n := m.nacks.Load() - before; n < 2 || n > 15 {
		t.Errorf("NACKs of one bad version in 500ms: got %d, want a few (backoff 20ms..100ms)", n)
	}
	m.set(t, "3", rule("edge", "a", rlsconfv3.RateLimitUnit_HOUR, 30))
	m.waitACK(t, "3")
	if got := in.limit("edge", "a", ""); got != 30 {
		t.Errorf("after version 3: limit %d, want 30", got)
	}
	if n := in.limit("api", "b", ""); n != -1 {
		t.Errorf("domain api was left out of version 3, yet still matches (limit %d)", n)
	}
	for result, want := range map[string]float64{"applied": 3, "rejected": float64(len(bad))} {
		got := collect(t, reg, "extauthz_xds_updates_total", result)
		if got != want {
			t.Errorf("extauthz_xds_updates_total{result=%q}: got %v, want %v", result, got, want)
		}
	}
}

// TestReconnect restarts the management server: the client keeps its rules
// while it is down, reconnects with backoff and resumes.
func TestReconnect(t *testing.T) {
	m := startMgmt(t, "127.0.0.1:0", cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil))
	in := newInstaller(t)
	reg := prometheus.NewRegistry()
	client(t, xdsrules.Settings{Address: m.addr}, in, reg)
	m.set(t, "1", rule("edge", "a", rlsconfv3.RateLimitUnit_MINUTE, 10))
	m.waitACK(t, "1")
	connected := func() float64 { return collect(t, reg, "extauthz_xds_connected", "") }
	if got := connected(); got != 1 {
		t.Errorf("extauthz_xds_connected while up: got %v, want 1", got)
	}

	m.stop()
	waitFor(t, "extauthz_xds_connected 0 after the server stopped", func() bool { return connected() == 0 })
	time.Sleep(150 * time.Millisecond) // a few failed reconnections
	if got := in.limit("edge", "a", ""); got != 10 {
		t.Fatalf("while the server is down: limit %d, want the old 10", got)
	}

	m2 := startMgmt(t, m.addr, cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil))
	m2.set(t, "2", rule("edge", "a", rlsconfv3.RateLimitUnit_MINUTE, 11))
	resume := m2.waitReq(t, "first request after the restart", func(*discoverygrpc.DiscoveryRequest) bool { return true })
	if got := resume.GetVersionInfo(); got != "1" {
		t.Errorf("resumed with version_info %q, want the version applied, 1", got)
	}
	m2.waitACK(t, "2")
	if got := in.limit("edge", "a", ""); got != 11 {
		t.Errorf("after the restart: limit %d, want 11", got)
	}
	if got := collect(t, reg, "extauthz_xds_stream_failures_total", ""); got < 1 {
		t.Errorf("extauthz_xds_stream_failures_total: got %v, want at least 1", got)
	}
}

func TestReadyWithoutRules(t *testing.T) {
	m := startMgmt(t, "127.0.0.1:0", cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil))
	c := client(t, xdsrules.Settings{Address: m.addr, ReadyWithoutRules: true}, newInstaller(t), nil)
	if err := c.Ready(); err != nil {
		t.Errorf("Ready with ready_without_rules: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := xdsrules.New(xdsrules.Settings{Address: "127.0.0.1:1"}, xdsrules.Options{}); err == nil {
		t.Error("New without Apply: got nil error")
	}
	if _, err := xdsrules.New(xdsrules.Settings{}, xdsrules.Options{Apply: func(context.Context, xdsrules.Update) error { return nil }}); err == nil || !strings.Contains(err.Error(), "address") {
		t.Errorf("New without an address: got %v, want an error naming address", err)
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var errNoMetric = errors.New("metric not found")

// collect returns the value of the metric name (with label result, when
// result is set) gathered from reg.
func collect(t *testing.T, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			match := result == ""
			for _, l := range mt.GetLabel() {
				match = match || l.GetName() == "result" && l.GetValue() == result
			}
			if !match {
				continue
			}
			if mt.GetCounter() != nil {
				return mt.GetCounter().GetValue()
			}
			return mt.GetGauge().GetValue()
		}
	}
	t.Fatalf("%s{result=%q}: %v", name, result, errNoMetric)
	return 0
}
