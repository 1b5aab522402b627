package tracing

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"

	"github.com/extauthz/extauthz/internal/otlptest"
)

// TestHTTP traces a handler answering the status its request names: one
// server span per request, named by the route (never the path), child of
// the request's traceparent, error status from 500 on.
func TestHTTP(t *testing.T) {
	col := otlptest.Start(t)
	p := startProvider(t, Settings{Enabled: true, Protocol: ProtocolGRPC, Endpoint: col.GRPCAddr, Insecure: true})
	h := p.HTTP("/json", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		trace.SpanFromContext(r.Context()).SetAttributes(attribute.Bool("test.handler_saw_span", true))
		// The handler's read deadline goes through the wrapper.
		if err := http.NewResponseController(w).SetReadDeadline(time.Now().Add(time.Second)); err != nil {
			t.Errorf("SetReadDeadline through the wrapper: %v", err)
		}
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		if code != 0 {
			w.WriteHeader(code)
		}
		_, _ = w.Write([]byte("{}"))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	send := func(method, query, traceparent string) {
		req, err := http.NewRequest(method, srv.URL+"/json/"+tracedSecretPath+"?"+query, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		if traceparent != "" {
			req.Header.Set("Traceparent", traceparent)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send(http.MethodPost, "", traceparent(parentTrace))
	send(http.MethodPost, "code=429", "")
	send(http.MethodPost, "code=503", "garbage")
	send("BREW", "", "")
	flush(t, p)
	spans := col.Spans()
	want := []struct {
		name, status string
		parent, err  bool
	}{
		{"POST /json", "200", true, false},
		{"POST /json", "429", false, false},
		{"POST /json", "503", false, true},
		{"_OTHER /json", "200", false, false},
	}
	if len(spans) != len(want) {
		t.Fatalf("got %d spans, want %d: %v", len(spans), len(want), spans)
	}
	for i, w := range want {
		s := spans[i]
		if s.GetName() != w.name || s.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("span %d: %q kind %v, want %q server", i, s.GetName(), s.GetKind(), w.name)
		}
		if got, _ := s.Attr("http.response.status_code"); got != w.status {
			t.Errorf("span %d: status %s, want %s", i, got, w.status)
		}
		if got := s.TraceID() == parentTrace && s.ParentID() == parentSpan; got != w.parent {
			t.Errorf("span %d: trace %s parent %s, want child of the traceparent %v", i, s.TraceID(), s.ParentID(), w.parent)
		}
		if got := s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR; got != w.err {
			t.Errorf("span %d: status %v, want error %v", i, s.GetStatus(), w.err)
		}
		if got, _ := s.Attr("test.handler_saw_span"); got != "true" {
			t.Errorf("span %d: the handler did not find the span", i)
		}
		if strings.Contains(s.String(), tracedSecretPath) {
			t.Errorf("span %d holds the request's path: %v", i, s)
		}
	}
	var off *Provider
	mux := http.NewServeMux()
	if got, ok := off.HTTP("/json", mux).(*http.ServeMux); !ok || got != mux {
		t.Error("tracing off wrapped the handler")
	}
}

// tracedSecretPath is a request path that must not reach a span.
const tracedSecretPath = "sk_path_secret"
