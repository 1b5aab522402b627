package tracing

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/extauthz/extauthz/internal/otlptest"
)

// BenchmarkInterceptor measures what tracing on adds to a call, without
// gRPC: a recorded span continuing Envoy's trace (exported in batches to
// an in-process collector), and a new trace that sampling_ratio 0 leaves
// unrecorded. Tracing off installs no interceptor at all.
func BenchmarkInterceptor(b *testing.B) {
	col := otlptest.Start(b)
	info := &grpc.UnaryServerInfo{FullMethod: methodShouldRateLimit}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	withParent := metadata.NewIncomingContext(context.Background(), metadata.Pairs("traceparent", traceparent(parentTrace)))
	zero := 0.0
	for _, tc := range []struct {
		name  string
		ratio *float64
		ctx   context.Context
	}{
		{"recorded", nil, withParent},
		{"sampled_out", &zero, context.Background()},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p, err := Start(context.Background(), Settings{Enabled: true, Protocol: ProtocolGRPC, Endpoint: col.GRPCAddr, Insecure: true, SamplingRatio: tc.ratio},
				Options{Getenv: func(string) string { return "" }})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = p.Shutdown(context.Background()) }()
			intercept := p.Interceptor()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := intercept(tc.ctx, nil, info, handler); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
