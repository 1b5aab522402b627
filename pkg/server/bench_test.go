package server

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/test/bufconn"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
)

// benchServer is a Server over a real-time memstore with generous limits.
func benchServer(b *testing.B, settings Settings) *Server {
	b.Helper()
	big := &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: 1 << 31}
	rules, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "remote_address", RateLimit: big},
		{Key: "path", Value: "/api/*", RateLimit: big},
		{Key: "user", RateLimit: big},
		{Key: "closed", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: 0}},
	}}}, descriptor.Options{})
	if err != nil {
		b.Fatal(err)
	}
	mem, err := memstore.New(memstore.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = mem.Close() })
	snap, err := NewSnapshot(rules, settings, nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Options{Store: mem}, snap)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// benchRequests returns n prebuilt requests, each with the descriptors mk
// makes for client i.
func benchRequests(n int, mk func(i int) []*ratelimitv3.RateLimitDescriptor) []*rlsv3.RateLimitRequest {
	reqs := make([]*rlsv3.RateLimitRequest, n)
	for i := range reqs {
		reqs[i] = &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: mk(i)}
	}
	return reqs
}

// BenchmarkShouldRateLimit measures the handler path in process (no gRPC):
// validation, matching, key encoding, one memstore Take, the response and
// metrics.
func BenchmarkShouldRateLimit(b *testing.B) {
	oneDesc := func(i int) []*ratelimitv3.RateLimitDescriptor {
		return []*ratelimitv3.RateLimitDescriptor{desc("remote_address", fmt.Sprintf("10.0.%d.%d", i/256, i%256))}
	}
	threeDesc := func(i int) []*ratelimitv3.RateLimitDescriptor {
		return []*ratelimitv3.RateLimitDescriptor{
			desc("remote_address", fmt.Sprintf("10.0.%d.%d", i/256, i%256)),
			desc("path", fmt.Sprintf("/api/v%d", i%7)),
			desc("user", fmt.Sprintf("user-%d", i)),
		}
	}
	refused := func(i int) []*ratelimitv3.RateLimitDescriptor {
		return []*ratelimitv3.RateLimitDescriptor{desc("closed", fmt.Sprint(i))}
	}
	allHeaders := Settings{Headers: HeaderSettings{Enabled: true, Draft: true}, OverLimitBody: true}
	cases := []struct {
		name     string
		settings Settings
		mk       func(int) []*ratelimitv3.RateLimitDescriptor
		wantCode rlsv3.RateLimitResponse_Code
	}{
		{name: "1desc", mk: oneDesc, wantCode: rlsv3.RateLimitResponse_OK},
		{name: "1desc_headers", settings: Settings{Headers: HeaderSettings{Enabled: true}}, mk: oneDesc, wantCode: rlsv3.RateLimitResponse_OK},
		{name: "3desc", mk: threeDesc, wantCode: rlsv3.RateLimitResponse_OK},
		{name: "3desc_draft_headers", settings: allHeaders, mk: threeDesc, wantCode: rlsv3.RateLimitResponse_OK},
		{name: "over_limit_body", settings: allHeaders, mk: refused, wantCode: rlsv3.RateLimitResponse_OVER_LIMIT},
	}
	ctx := context.Background()
	for _, tc := range cases {
		reqs := benchRequests(1024, tc.mk)
		s := benchServer(b, tc.settings)
		// Check the inputs do what the case says.
		if resp, err := s.ShouldRateLimit(ctx, reqs[0]); err != nil || resp.GetOverallCode() != tc.wantCode {
			b.Fatalf("%s: got %v, %v; want %v", tc.name, resp.GetOverallCode(), err, tc.wantCode)
		}
		benchCalls(b, tc.name, reqs, func(r *rlsv3.RateLimitRequest) error {
			_, err := s.ShouldRateLimit(ctx, r)
			return err
		})
	}
}

// noopRLS answers OK with one bare status per descriptor, like rlsload's
// no-op server.
type noopRLS struct {
	rlsv3.UnimplementedRateLimitServiceServer
}

func (noopRLS) ShouldRateLimit(_ context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	sts := make([]rlsv3.RateLimitResponse_DescriptorStatus, len(req.Descriptors))
	resp := &rlsv3.RateLimitResponse{OverallCode: rlsv3.RateLimitResponse_OK, Statuses: make([]*rlsv3.RateLimitResponse_DescriptorStatus, len(sts))}
	for i := range sts {
		sts[i].Code = rlsv3.RateLimitResponse_OK
		resp.Statuses[i] = &sts[i]
	}
	return resp, nil
}

// BenchmarkGRPC compares, over in-process gRPC (bufconn), the server with
// a no-op RateLimitService on the same server options: the share of a
// call's cost that deciding adds.
func BenchmarkGRPC(b *testing.B) {
	reqs := benchRequests(1024, func(i int) []*ratelimitv3.RateLimitDescriptor {
		return []*ratelimitv3.RateLimitDescriptor{desc("remote_address", fmt.Sprintf("10.0.%d.%d", i/256, i%256))}
	})
	for _, target := range []string{"noop", "server"} {
		b.Run(target, func(b *testing.B) {
			var impl rlsv3.RateLimitServiceServer = noopRLS{}
			if target == "server" {
				impl = benchServer(b, Settings{})
			}
			client := bufconnClient(b, impl)
			ctx := context.Background()
			b.ReportAllocs()
			b.SetParallelism(16)
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				i := int(n.Add(7919))
				for pb.Next() {
					if _, err := client.ShouldRateLimit(ctx, reqs[i&1023]); err != nil {
						b.Error(err)
						return
					}
					i++
				}
			})
		})
	}
}

// bufconnClient serves impl on an in-process listener with NewGRPCServer's
// options and returns a client.
func bufconnClient(b *testing.B, impl rlsv3.RateLimitServiceServer) rlsv3.RateLimitServiceClient {
	b.Helper()
	lis := bufconn.Listen(1 << 20)
	g, _ := NewGRPCServer(GRPCOptions{})
	rlsv3.RegisterRateLimitServiceServer(g, impl)
	go func() { _ = g.Serve(lis) }()
	b.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return rlsv3.NewRateLimitServiceClient(conn)
}

// benchCalls runs call over reqs (1024 of them, cycled) as two
// sub-benchmarks: name, serially, and name+"/parallel", from
// b.RunParallel's goroutines.
func benchCalls[R any](b *testing.B, name string, reqs []R, call func(R) error) {
	if len(reqs) != 1024 {
		b.Fatalf("benchCalls: got %d requests, want 1024", len(reqs))
	}
	b.Run(name, func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := call(reqs[i&1023]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run(name+"/parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if err := call(reqs[i&1023]); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}
