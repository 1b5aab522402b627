package main

import (
	"bufio"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/pkg/rlsclient/rlstest"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/ratelimit/grpclimit"
)

// start runs the example with args until the test ends and returns a
// health client connected to it.
func start(t *testing.T, args ...string) healthpb.HealthClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		cancel()
		t.Fatalf("no listening line: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		cancel()
		t.Fatalf("first line %q, want listening on ADDR", line)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return healthpb.NewHealthClient(conn)
}

func TestExample(t *testing.T) {
	for name, args := range map[string][]string{
		"in process": {"--config", "config.yaml"},
		"remote":     {"--remote", rlstest.Start(t, "config.yaml", server.Settings{Headers: server.HeaderSettings{Enabled: true}}).Addr},
	} {
		t.Run(name, func(t *testing.T) {
			client := start(t, args...)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			for i := range 5 {
				var tr metadata.MD
				if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr)); err != nil {
					t.Fatalf("Check %d: %v", i, err)
				}
				if got := tr.Get(grpclimit.LimitKey); len(got) != 1 || got[0] != "5" {
					t.Errorf("Check %d: trailers %v, want limit 5", i, tr)
				}
			}
			var tr metadata.MD
			_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr))
			st := status.Convert(err)
			if st.Code() != codes.ResourceExhausted {
				t.Fatalf("6th Check: %v, want ResourceExhausted", err)
			}
			var retry bool
			for _, d := range st.Details() {
				if r, ok := d.(*errdetails.RetryInfo); ok && r.RetryDelay.AsDuration() > 0 {
					retry = true
				}
			}
			if !retry || len(tr.Get(grpclimit.RetryAfterKey)) != 1 {
				t.Errorf("6th Check: details %v trailers %v, want RetryInfo and retry-after", st.Details(), tr)
			}
			// Watch is under the global limit only (6 of 100 used).
			stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				t.Fatalf("Watch: %v", err)
			}
		})
	}
}

func TestExampleFlags(t *testing.T) {
	ctx := context.Background()
	if err := run(ctx, []string{"--listen", "127.0.0.1:0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--config or --remote") {
		t.Errorf("no config: %v", err)
	}
}
