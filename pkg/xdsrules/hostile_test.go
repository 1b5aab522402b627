package xdsrules_test

import (
	"net"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/extauthz/extauthz/pkg/xdsrules"
)

// scripted is a hostile management server: each stream reads the client's
// first request, then sends the responses given on steps one by one,
// passing the client's answer to each on replies.
type scripted struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	steps   chan *discoverygrpc.DiscoveryResponse
	replies chan *discoverygrpc.DiscoveryRequest
}

func (s *scripted) StreamAggregatedResources(st grpc.BidiStreamingServer[discoverygrpc.DiscoveryRequest, discoverygrpc.DiscoveryResponse]) error {
	if _, err := st.Recv(); err != nil {
		return err
	}
	for {
		select {
		case <-st.Context().Done():
			return nil
		case resp := <-s.steps:
			if err := st.Send(resp); err != nil {
				return err
			}
			req, err := st.Recv()
			if err != nil {
				return err
			}
			s.replies <- req
		}
	}
}

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// nested returns a config whose descriptors nest depth levels.
func nested(depth int) *rlsconfv3.RateLimitConfig {
	d := &rlsconfv3.RateLimitDescriptor{Key: "k", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_SECOND, RequestsPerUnit: 1}}
	for range depth - 1 {
		d = &rlsconfv3.RateLimitDescriptor{Key: "k", Descriptors: []*rlsconfv3.RateLimitDescriptor{d}}
	}
	return &rlsconfv3.RateLimitConfig{Name: "deep", Domain: "deep", Descriptors: []*rlsconfv3.RateLimitDescriptor{d}}
}

// TestHostileServer feeds the client malformed and hostile responses:
// each is NACKed with a reason and the rules in force stay; the stream
// survives them.
func TestHostileServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &scripted{steps: make(chan *discoverygrpc.DiscoveryResponse), replies: make(chan *discoverygrpc.DiscoveryRequest)}
	g := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, srv)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	in := newInstaller(t)
	client(t, xdsrules.Settings{Address: lis.Addr().String(), MaxMessageBytes: 64 << 10}, in, nil)

	good := rule("edge", "a", rlsconfv3.RateLimitUnit_MINUTE, 7)
	wrapped := anyOf(t, &discoverygrpc.Resource{Name: "edge/a", Resource: anyOf(t, rule("edge", "a", rlsconfv3.RateLimitUnit_MINUTE, 8))})
	tests := []struct {
		name      string
		typeURL   string // default xdsrules.TypeURL
		resources []*anypb.Any
		wantNACK  string // "": an ACK
		wantLimit int64  // edge/a afterwards
	}{
		{name: "good", resources: []*anypb.Any{anyOf(t, good)}, wantLimit: 7},
		{name: "response of another type", typeURL: resource.ClusterType, resources: []*anypb.Any{anyOf(t, good)}, wantNACK: "subscribes to", wantLimit: 7},
		{name: "resource of another type", resources: []*anypb.Any{anyOf(t, &clusterv3.Cluster{Name: "c"})}, wantNACK: "resources[0] is of type", wantLimit: 7},
		{name: "undecodable bytes", resources: []*anypb.Any{{TypeUrl: xdsrules.TypeURL, Value: []byte{0xff, 0xff, 0xff}}}, wantNACK: "resources[0]", wantLimit: 7},
		{name: "too deep", resources: []*anypb.Any{anyOf(t, nested(100))}, wantNACK: "nest deeper than", wantLimit: 7},
		{name: "control characters", resources: []*anypb.Any{anyOf(t, rule("edge", "a\nb", rlsconfv3.RateLimitUnit_SECOND, 1))}, wantNACK: "control characters", wantLimit: 7},
		{name: "unlimited with a count", resources: []*anypb.Any{anyOf(t, &rlsconfv3.RateLimitConfig{Domain: "edge", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: "a", RateLimit: &rlsconfv3.RateLimitPolicy{Unlimited: true, RequestsPerUnit: 5}}}})}, wantNACK: "unlimited", wantLimit: 7},
		{name: "replaces an unknown name", resources: []*anypb.Any{anyOf(t, &rlsconfv3.RateLimitConfig{Domain: "edge", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: "a", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: rlsconfv3.RateLimitUnit_SECOND, RequestsPerUnit: 5, Replaces: []*rlsconfv3.RateLimitReplace{{Name: "nope"}}}}}})}, wantNACK: "no rate_limit of this domain is named", wantLimit: 7},
		{name: "wrapped in a Resource", resources: []*anypb.Any{wrapped}, wantLimit: 8},
		{name: "a heartbeat keeps the resource", resources: []*anypb.Any{anyOf(t, &discoverygrpc.Resource{Name: "edge/a"})}, wantLimit: 8},
		{name: "a heartbeat of an unknown resource", resources: []*anypb.Any{anyOf(t, &discoverygrpc.Resource{Name: "gone"})}, wantNACK: "heartbeat", wantLimit: 8},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := &discoverygrpc.DiscoveryResponse{VersionInfo: tc.name, TypeUrl: xdsrules.TypeURL, Resources: tc.resources, Nonce: string(rune('a' + i))}
			if tc.typeURL != "" {
				resp.TypeUrl = tc.typeURL
			}
			reply := exchange(t, srv, resp)
			if got := reply.GetResponseNonce(); got != resp.Nonce {
				t.Errorf("answer nonce: got %q, want %q", got, resp.Nonce)
			}
			msg := reply.GetErrorDetail().GetMessage()
			switch {
			case tc.wantNACK == "" && reply.GetErrorDetail() != nil:
				t.Errorf("got a NACK (%s), want an ACK", msg)
			case tc.wantNACK == "" && reply.GetVersionInfo() != tc.name:
				t.Errorf("ACK version_info: got %q, want %q", reply.GetVersionInfo(), tc.name)
			case tc.wantNACK != "" && !strings.Contains(msg, tc.wantNACK):
				t.Errorf("NACK error_detail: got %q, want it to contain %q", msg, tc.wantNACK)
			case tc.wantNACK != "" && reply.GetVersionInfo() == tc.name:
				t.Errorf("NACK version_info: got the rejected version %q", tc.name)
			}
			if got := in.limit("edge", "a", ""); got != tc.wantLimit {
				t.Errorf("edge/a afterwards: limit %d, want %d", got, tc.wantLimit)
			}
		})
	}

	// A response larger than max_message_bytes breaks the stream; the
	// client opens another and goes on.
	big := make([]*anypb.Any, 0, 8)
	for range 8 {
		big = append(big, &anypb.Any{TypeUrl: xdsrules.TypeURL, Value: make([]byte, 16<<10)})
	}
	srv.steps <- &discoverygrpc.DiscoveryResponse{VersionInfo: "big", TypeUrl: xdsrules.TypeURL, Resources: big, Nonce: "big"}
	reply := exchange(t, srv, &discoverygrpc.DiscoveryResponse{VersionInfo: "after", TypeUrl: xdsrules.TypeURL, Resources: []*anypb.Any{anyOf(t, good)}, Nonce: "after"})
	if reply.GetErrorDetail() != nil || reply.GetVersionInfo() != "after" {
		t.Errorf("after an oversized response: got version_info %q, error_detail %v; want an ACK of the next stream's update", reply.GetVersionInfo(), reply.GetErrorDetail())
	}
}

// exchange sends resp on the scripted server's next stream and returns the
// client's answer.
func exchange(t *testing.T, srv *scripted, resp *discoverygrpc.DiscoveryResponse) *discoverygrpc.DiscoveryRequest {
	t.Helper()
	select {
	case srv.steps <- resp:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out handing a response to the scripted server")
	}
	select {
	case r := <-srv.replies:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for the client's answer")
		return nil
	}
}
