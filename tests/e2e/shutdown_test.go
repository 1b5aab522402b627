package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/protobuf/proto"
)

// TestGracefulShutdown starts a call, sends SIGTERM while the call is in
// flight (its request only half sent), and checks that the server reports
// not ready, still completes the call, and then exits 0.
func TestGracefulShutdown(t *testing.T) {
	p := startRLS(t)

	// A gRPC call over plain HTTP/2 whose request body we control: headers
	// and half the message now, the rest after SIGTERM.
	frame := grpcFrame(t, &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.9.9.9")}})

	pr, pw := io.Pipe()
	// Prior-knowledge HTTP/2 over TCP (h2c), as gRPC speaks it.
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, "http://"+p.GRPCAddr+"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")

	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		body, err := io.ReadAll(resp.Body)
		done <- result{resp: resp, body: body, err: err}
	}()
	half := len(frame) / 2
	if _, err := pw.Write(frame[:half]); err != nil {
		t.Fatalf("write first half: %v", err)
	}
	// The server must have the call before SIGTERM, or draining closes an
	// idle connection. It reads a connection's frames in order, so once a
	// second call on the same connection is answered, the first one's
	// headers have been taken in.
	syncCall(t, tr, "http://"+p.GRPCAddr+"/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit", grpcFrame(t, &rlsv3.RateLimitRequest{Domain: "edge", Descriptors: []*ratelimitv3.RateLimitDescriptor{desc("remote_address", "10.9.9.8")}}))

	p.Signal(t, syscall.SIGTERM)
	// While the call is in flight the process drains: /readyz says so.
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, body := p.Get(t, "/readyz")
		if code == http.StatusServiceUnavailable {
			if !bytes.Contains([]byte(body), []byte("shutting down")) {
				t.Errorf("/readyz while draining: got %q", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after SIGTERM", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p.Exited() {
		t.Fatal("extauthz exited with a call in flight")
	}

	if _, err := pw.Write(frame[half:]); err != nil {
		t.Fatalf("write second half: %v", err)
	}
	_ = pw.Close()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the in-flight call did not complete")
	}
	if r.err != nil {
		t.Fatalf("in-flight call: %v", r.err)
	}
	if got := r.resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Fatalf("in-flight call: got grpc-status %q (%s), want 0", got, r.resp.Trailer.Get("Grpc-Message"))
	}
	var resp rlsv3.RateLimitResponse
	if len(r.body) < 5 {
		t.Fatalf("in-flight call: body of %d bytes", len(r.body))
	}
	if err := proto.Unmarshal(r.body[5:], &resp); err != nil {
		t.Fatalf("in-flight call: decode response: %v", err)
	}
	if resp.GetOverallCode() != rlsv3.RateLimitResponse_OK || resp.GetStatuses()[0].GetLimitRemaining() != 2 {
		t.Errorf("in-flight call: got %v, want OK with 2 remaining", fmt.Sprint(&resp))
	}

	if code := p.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("got exit code %d, want 0; logs:\n%s", code, p.Logs())
	}
}

// grpcFrame is m as one gRPC length-prefixed message.
func grpcFrame(t *testing.T, m proto.Message) []byte {
	t.Helper()
	msg, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(frame[1:], uint32(len(msg)))
	return append(frame, msg...)
}

// syncCall makes one complete gRPC call through tr (h2c) and requires
// grpc-status 0.
func syncCall(t *testing.T, tr *http.Transport, url string, frame []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(frame))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("sync call: %v", err)
	}
	defer resp.Body.Close()
	if _, err := io.ReadAll(resp.Body); err != nil {
		t.Fatalf("sync call: %v", err)
	}
	if got := resp.Trailer.Get("Grpc-Status"); got != "0" {
		t.Fatalf("sync call: got grpc-status %q (%s), want 0", got, resp.Trailer.Get("Grpc-Message"))
	}
}
