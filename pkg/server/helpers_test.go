package server

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// testNow is aligned to an hour, so windows of a second, minute or hour all
// start there and reset in exactly one unit.
var testNow = time.Unix(1_700_002_800, 0)

// testRules is the rule tree of the handler tests (domain "edge").
func testRules(t testing.TB) *descriptor.Set {
	t.Helper()
	perMinute := func(n int64) *descriptor.RateLimit {
		return &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: n}
	}
	s, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "remote_address", RateLimit: perMinute(2)},
		{Key: "path", Value: "/login", RateLimit: &descriptor.RateLimit{Name: "login", Unit: descriptor.UnitHour, RequestsPerUnit: 1}},
		{Key: "path", Value: "/shadow", ShadowMode: true, RateLimit: perMinute(1)},
		{Key: "path", Value: "/closed", RateLimit: perMinute(0)},
		{Key: "path", Value: "/bucket", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitSecond, RequestsPerUnit: 10, Algorithm: limiter.TokenBucket, Burst: 4}},
		{Key: "ldap", RateLimit: &descriptor.RateLimit{Unlimited: true}},
		{Key: "client", Value: "vip", RateLimit: &descriptor.RateLimit{Name: "vip", Unit: descriptor.UnitHour, RequestsPerUnit: 100, Replaces: []string{"per_client"}}},
		{Key: "client_id", RateLimit: &descriptor.RateLimit{Name: "per_client", Unit: descriptor.UnitMinute, RequestsPerUnit: 5}},
		{Key: "detailed", DetailedMetric: true, RateLimit: perMinute(10)},
		{Key: "group", Descriptors: []descriptor.Node{
			{Key: "user", RateLimit: perMinute(3)},
		}},
	}}}, descriptor.Options{})
	if err != nil {
		t.Fatalf("NewSet: %v", err)
	}
	return s
}

// takeCall is one recorded Store.Take.
type takeCall struct {
	mode limiter.Mode
	reqs []limiter.Request
}

// recordingStore records every Take and passes it to next (a memstore on
// testNow by default), or fails with err.
type recordingStore struct {
	next limiter.Store

	mu    sync.Mutex
	calls []takeCall
	err   error
}

func (s *recordingStore) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	s.mu.Lock()
	c := takeCall{mode: mode, reqs: make([]limiter.Request, len(reqs))}
	for i, r := range reqs {
		r.Key = strings.Clone(r.Key) // the server reuses its key buffer
		c.reqs[i] = r
	}
	s.calls = append(s.calls, c)
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.next.Take(ctx, mode, reqs, res)
}

func (s *recordingStore) takes() []takeCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]takeCall(nil), s.calls...)
}

func (s *recordingStore) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

var errBackend = errors.New("backend down")

// env is a Server on bufconn with a recording memstore and its own registry.
type env struct {
	srv    *Server
	store  *recordingStore
	mem    *memstore.Store
	reg    *prometheus.Registry
	client rlsv3.RateLimitServiceClient
	clock  *fakeClock
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newEnv(t testing.TB, settings Settings) *env {
	t.Helper()
	clock := &fakeClock{now: testNow}
	mem, err := memstore.New(memstore.Options{MaxKeys: 10_000, Now: clock.Now, SweepInterval: -1})
	if err != nil {
		t.Fatalf("memstore.New: %v", err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	e := &env{store: &recordingStore{next: mem}, mem: mem, reg: prometheus.NewRegistry(), clock: clock}
	snap, err := NewSnapshot(testRules(t), settings, []byte("config: test\n"))
	if err != nil {
		t.Fatalf("NewSnapshot: %v", err)
	}
	e.srv, err = New(Options{Store: e.store, Metrics: mustMetrics(t, e.reg)}, snap)
	if err != nil {
		t.Fatalf("New: %v", err)
	}

	lis := bufconn.Listen(1 << 20)
	g, _ := NewGRPCServer(GRPCOptions{})
	e.srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	e.client = rlsv3.NewRateLimitServiceClient(conn)
	return e
}

// call sends a request and fails the test on a transport error.
func (e *env) call(t testing.TB, req *rlsv3.RateLimitRequest) *rlsv3.RateLimitResponse {
	t.Helper()
	resp, err := e.client.ShouldRateLimit(context.Background(), req)
	if err != nil {
		t.Fatalf("ShouldRateLimit(%v): %v", req, err)
	}
	return resp
}

// desc builds a descriptor from key, value pairs.
func desc(kv ...string) *ratelimitv3.RateLimitDescriptor {
	d := &ratelimitv3.RateLimitDescriptor{}
	for i := 0; i+1 < len(kv); i += 2 {
		d.Entries = append(d.Entries, &ratelimitv3.RateLimitDescriptor_Entry{Key: kv[i], Value: kv[i+1]})
	}
	return d
}

func request(domain string, ds ...*ratelimitv3.RateLimitDescriptor) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: domain, Descriptors: ds}
}

// mustMetrics and mustBackendMetrics register on reg or fail t.
func mustMetrics(t testing.TB, reg prometheus.Registerer) *Metrics {
	t.Helper()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func mustBackendMetrics(t testing.TB, reg prometheus.Registerer) *BackendMetrics {
	t.Helper()
	m, err := NewBackendMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
