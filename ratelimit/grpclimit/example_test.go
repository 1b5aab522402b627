package grpclimit_test

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/ratelimit/grpclimit"
)

// A gRPC server limited per peer address, and per method and peer.
func Example() {
	lim, err := ratelimit.Open(context.Background(), "testdata/config.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer lim.Close()

	peerIP := grpclimit.By("remote_address", grpclimit.Peer())
	in, err := grpclimit.New(lim, grpclimit.Options{
		Domain: "grpc",
		Descriptors: [][]grpclimit.Key{
			{peerIP},
			{grpclimit.By("method", grpclimit.Method()), peerIP},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	g := grpc.NewServer(grpc.ChainUnaryInterceptor(in.Unary()), grpc.ChainStreamInterceptor(in.Stream()))
	defer g.Stop()
	// Register services on g, then g.Serve(listener).
	fmt.Println("ready")
	// Output: ready
}
