package main

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

// noopAuthz answers every Check OK with an empty OkHttpResponse: the least
// an ext_authz server can do.
type noopAuthz struct {
	authv3.UnimplementedAuthorizationServer
}

func (noopAuthz) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status:       &rpcstatus.Status{Code: int32(codes.OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{}},
	}, nil
}

// buildChecks prebuilds one CheckRequest per key, shaped like the ones
// Envoy's ext_authz filter sends: the client address is the peer (which
// bench.yaml's authz section uses) and the last X-Forwarded-For entry;
// with two descriptors the path is /api/N, which the path extractor of
// bench.yaml turns into a second descriptor (else the path is /, which
// yields none). Key i carries the same client address as buildRequests'.
func buildChecks(o options) []*authv3.CheckRequest {
	reqs := make([]*authv3.CheckRequest, o.keys)
	for i := range reqs {
		ip := clientAddr(i)
		path := "/"
		if o.descriptors > 1 {
			path = fmt.Sprintf("/api/%d", i%16)
		}
		id := fmt.Sprintf("rlsload-%d", i)
		reqs[i] = &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
			}}},
			Destination: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 10000}},
			}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: id, Method: "GET", Host: "bench.example", Path: path, Scheme: "http", Protocol: "HTTP/1.1",
				Headers: map[string]string{
					":authority": "bench.example", ":method": "GET", ":path": path, ":scheme": "http",
					"user-agent": "rlsload", "accept": "*/*", "x-forwarded-for": ip, "x-forwarded-proto": "http",
					"x-request-id": id,
				},
			}},
		}}
	}
	return reqs
}

// checkCaller calls Check over conn with reqs[i % len(reqs)]; an answer
// other than OK is an error (bench.yaml admits everything).
func checkCaller(conn *grpc.ClientConn, reqs []*authv3.CheckRequest) caller {
	c := authv3.NewAuthorizationClient(conn)
	return func(ctx context.Context, i int) error {
		resp, err := c.Check(ctx, reqs[i%len(reqs)])
		if err != nil {
			return err
		}
		if resp.GetOkResponse() == nil {
			return fmt.Errorf("check: got status %v, want OK", resp.GetStatus())
		}
		return nil
	}
}
