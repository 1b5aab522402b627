// Package otlptest runs an in-process OTLP trace collector for tests: a
// real OTLP/gRPC TraceService and an OTLP/HTTP endpoint on loopback ports,
// keeping every span they receive.
package otlptest

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// Span is one received span with the resource attributes it came with.
type Span struct {
	*tracepb.Span
	// Resource holds the resource's string attributes.
	Resource map[string]string
}

// TraceID and ParentID return the span's trace and parent span ids in hex
// ("" when absent).
func (s Span) TraceID() string  { return hex.EncodeToString(s.GetTraceId()) }
func (s Span) ParentID() string { return hex.EncodeToString(s.GetParentSpanId()) }

// Attr returns the span attribute key as a string (ints in decimal) and
// whether it is set.
func (s Span) Attr(key string) (string, bool) {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return valueString(kv.GetValue()), true
		}
	}
	return "", false
}

func valueString(v *commonpb.AnyValue) string {
	switch x := v.GetValue().(type) {
	case *commonpb.AnyValue_StringValue:
		return x.StringValue
	case *commonpb.AnyValue_IntValue:
		return strconv.FormatInt(x.IntValue, 10)
	case *commonpb.AnyValue_BoolValue:
		if x.BoolValue {
			return "true"
		}
		return "false"
	}
	return v.String()
}

// Collector keeps the spans exported to it.
type Collector struct {
	coltracepb.UnimplementedTraceServiceServer

	// GRPCAddr is the OTLP/gRPC address (host:port, plaintext); HTTPURL
	// the OTLP/HTTP traces URL (http://host:port/v1/traces).
	GRPCAddr string
	HTTPURL  string

	mu      sync.Mutex
	spans   []Span
	headers map[string]string // of the last export, keys lower case
	changed chan struct{}
}

// Start runs a collector until the test ends.
func Start(t testing.TB) *Collector {
	t.Helper()
	c := &Collector{changed: make(chan struct{})}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("otlptest: listen: %v", err)
	}
	g := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(g, c)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	c.GRPCAddr = lis.Addr().String()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", c.serveHTTP)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	c.HTTPURL = hs.URL + "/v1/traces"
	return c
}

// Export implements the OTLP TraceService.
func (c *Collector) Export(ctx context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	h := map[string]string{}
	for k, vs := range md {
		h[k] = strings.Join(vs, ",")
	}
	c.add(req, h)
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// serveHTTP takes an OTLP/HTTP export (protobuf).
func (c *Collector) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	req := new(coltracepb.ExportTraceServiceRequest)
	if err == nil {
		err = proto.Unmarshal(body, req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h := map[string]string{}
	for k, vs := range r.Header {
		h[strings.ToLower(k)] = strings.Join(vs, ",")
	}
	c.add(req, h)
	out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(out)
}

func (c *Collector) add(req *coltracepb.ExportTraceServiceRequest, headers map[string]string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.headers = headers
	for _, rs := range req.GetResourceSpans() {
		res := map[string]string{}
		for _, kv := range rs.GetResource().GetAttributes() {
			res[kv.GetKey()] = valueString(kv.GetValue())
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, sp := range ss.GetSpans() {
				c.spans = append(c.spans, Span{Span: sp, Resource: res})
			}
		}
	}
	close(c.changed)
	c.changed = make(chan struct{})
}

// Header returns header key (lower case) of the last export, gRPC
// metadata or HTTP header.
func (c *Collector) Header(key string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.headers[key]
}

// Spans returns the spans received so far.
func (c *Collector) Spans() []Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.spans)
}

// WaitSpans waits until at least n spans have arrived, or timeout, and
// returns the spans received.
func (c *Collector) WaitSpans(n int, timeout time.Duration) []Span {
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		got, changed := len(c.spans), c.changed
		c.mu.Unlock()
		if got >= n {
			return c.Spans()
		}
		select {
		case <-changed:
		case <-deadline:
			return c.Spans()
		}
	}
}
