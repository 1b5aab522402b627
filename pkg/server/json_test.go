package server

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/backends/memstore"
)

// jsonAnswer is one /json answer.
type jsonAnswer struct {
	code        int
	contentType string
	body        string
}

// postJSON sends body to h as POST /json.
func postJSON(t testing.TB, h http.Handler, body string) jsonAnswer {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/json", strings.NewReader(body)))
	return jsonAnswer{rec.Code, rec.Header().Get("Content-Type"), rec.Body.String()}
}

// decodeAnswer parses a 200 or 429 answer.
func decodeAnswer(t testing.TB, a jsonAnswer) *rlsv3.RateLimitResponse {
	t.Helper()
	if a.contentType != "application/json" {
		t.Fatalf("content type %q, want application/json (status %d, body %q)", a.contentType, a.code, a.body)
	}
	resp := new(rlsv3.RateLimitResponse)
	if err := protojson.Unmarshal([]byte(a.body), resp); err != nil {
		t.Fatalf("answer %q is not a protojson RateLimitResponse: %v", a.body, err)
	}
	return resp
}

const (
	ipBody    = `{"domain": "edge", "descriptors": [{"entries": [{"key": "remote_address", "value": "10.0.0.1"}]}]}`
	loginBody = `{"domain":"edge","descriptors":[{"entries":[{"key":"path","value":"/login"}]}],"hits_addend":1}`
)

func TestJSONDecision(t *testing.T) {
	e := newEnv(t, Settings{})
	h := e.srv.JSONHandler(0)
	// remote_address allows 2 a minute.
	for i, want := range []struct {
		code      int
		overall   rlsv3.RateLimitResponse_Code
		remaining uint32
	}{{200, rlsv3.RateLimitResponse_OK, 1}, {200, rlsv3.RateLimitResponse_OK, 0}, {429, rlsv3.RateLimitResponse_OVER_LIMIT, 0}} {
		a := postJSON(t, h, ipBody)
		if a.code != want.code {
			t.Fatalf("request %d: status %d, want %d (body %q)", i, a.code, want.code, a.body)
		}
		resp := decodeAnswer(t, a)
		if resp.OverallCode != want.overall || len(resp.Statuses) != 1 {
			t.Fatalf("request %d: %v, want overall %v and one status", i, resp, want.overall)
		}
		st := resp.Statuses[0]
		if st.LimitRemaining != want.remaining || st.CurrentLimit.GetRequestsPerUnit() != 2 ||
			st.CurrentLimit.GetUnit() != rlsv3.RateLimitResponse_RateLimit_MINUTE || st.DurationUntilReset.AsDuration() <= 0 {
			t.Errorf("request %d: status %v, want 2/minute with %d remaining and a reset", i, st, want.remaining)
		}
		// protojson's names, as envoyproxy/ratelimit answers.
		if !strings.Contains(a.body, `"overallCode":"`+want.overall.String()+`"`) {
			t.Errorf("request %d: body %q lacks overallCode %s", i, a.body, want.overall)
		}
	}
	// Proto field names are accepted too; the named limit shows.
	a := postJSON(t, h, loginBody)
	if resp := decodeAnswer(t, a); a.code != 200 || resp.Statuses[0].CurrentLimit.GetName() != "login" {
		t.Errorf("snake_case request: %d %q, want 200 naming the login limit", a.code, a.body)
	}
	// An unknown domain counts nothing and answers OK, as on gRPC.
	if a := postJSON(t, h, `{"domain":"nope","descriptors":[{"entries":[{"key":"k","value":"v"}]}]}`); a.code != 200 {
		t.Errorf("unknown domain: %d %q, want 200", a.code, a.body)
	}
}

// TestJSONSameDecision shows that /json and gRPC share one decision: their
// hits land on the same counter.
func TestJSONSameDecision(t *testing.T) {
	e := newEnv(t, Settings{})
	h := e.srv.JSONHandler(0)
	if resp := e.call(t, request("edge", desc("remote_address", "10.0.0.9"))); resp.OverallCode != rlsv3.RateLimitResponse_OK {
		t.Fatalf("gRPC: %v, want OK", resp.OverallCode)
	}
	body := strings.Replace(ipBody, "10.0.0.1", "10.0.0.9", 1)
	if a := postJSON(t, h, body); a.code != 200 {
		t.Fatalf("second hit over /json: %d, want 200", a.code)
	}
	if a := postJSON(t, h, body); a.code != 429 {
		t.Fatalf("third hit over /json: %d, want 429", a.code)
	}
	if resp := e.call(t, request("edge", desc("remote_address", "10.0.0.9"))); resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("gRPC after /json: %v, want OVER_LIMIT", resp.OverallCode)
	}
	// Response headers and the over-limit body come along, as on gRPC.
	e2 := newEnv(t, Settings{Headers: HeaderSettings{Enabled: true}, OverLimitBody: true})
	a := postJSON(t, e2.srv.JSONHandler(0), `{"domain":"edge","descriptors":[{"entries":[{"key":"path","value":"/closed"}]}]}`)
	resp := decodeAnswer(t, a)
	if a.code != 429 || len(resp.ResponseHeadersToAdd) == 0 || len(resp.RawBody) == 0 {
		t.Errorf("closed path with headers: %d %q, want 429 with headers and a raw body", a.code, a.body)
	}
}

func TestJSONBadRequests(t *testing.T) {
	e := newEnv(t, Settings{})
	h := e.srv.JSONHandler(0)
	entry := `{"entries":[{"key":"remote_address","value":"10.0.0.1"}]}`
	many := strings.TrimSuffix(strings.Repeat(entry+",", 65), ",")
	tests := []struct {
		name, body string
		want       string // in the message
	}{
		{"empty body", "", "not a RateLimitRequest"},
		{"not JSON", "domain=edge", "not a RateLimitRequest"},
		{"truncated", `{"domain":"edge","descriptors":[`, "not a RateLimitRequest"},
		{"null", "null", "not a RateLimitRequest"},
		{"array", "[]", "not a RateLimitRequest"},
		{"unknown field", `{"domain":"edge","colour":"blue","descriptors":[` + entry + `]}`, `unknown field "colour"`},
		{"unknown entry field", `{"domain":"edge","descriptors":[{"entries":[{"key":"k","valu":"v"}]}]}`, `unknown field "valu"`},
		{"duplicate field", `{"domain":"edge","domain":"other","descriptors":[` + entry + `]}`, "duplicate field"},
		{"wrong type", `{"domain":7,"descriptors":[` + entry + `]}`, "domain"},
		{"empty domain", `{"descriptors":[` + entry + `]}`, "empty domain"},
		{"no descriptors", `{"domain":"edge"}`, "no descriptors"},
		{"empty descriptors", `{"domain":"edge","descriptors":[]}`, "no descriptors"},
		{"descriptor without entries", `{"domain":"edge","descriptors":[{}]}`, "descriptor 0 has no entries"},
		{"entry without key", `{"domain":"edge","descriptors":[{"entries":[{"value":"v"}]}]}`, "descriptor 0 entry 0 has an empty key"},
		{"too many descriptors", `{"domain":"edge","descriptors":[` + many + `]}`, "64"},
		{"hits over uint32", `{"domain":"edge","hitsAddend":4294967296,"descriptors":[` + entry + `]}`, "hitsAddend"},
		{"hits over max_hits_addend", `{"domain":"edge","hitsAddend":4000000000,"descriptors":[` + entry + `]}`, "hits"},
		{"huge number", `{"domain":"edge","hitsAddend":1e400,"descriptors":[` + entry + `]}`, "hitsAddend"},
		{"negative hits", `{"domain":"edge","hitsAddend":-1,"descriptors":[` + entry + `]}`, "hitsAddend"},
		{"descriptor hits over uint64", `{"domain":"edge","descriptors":[{"entries":[{"key":"k","value":"v"}],"hitsAddend":"18446744073709551616"}]}`, "uint64"},
		{"override unit unknown", `{"domain":"edge","descriptors":[{"entries":[{"key":"k","value":"v"}],"limit":{"requestsPerUnit":5,"unit":99}}]}`, "unit"},
		{"override unit name unknown", `{"domain":"edge","descriptors":[{"entries":[{"key":"k","value":"v"}],"limit":{"requestsPerUnit":5,"unit":"FORTNIGHT"}}]}`, "FORTNIGHT"},
		{"override too large", `{"domain":"edge","descriptors":[{"entries":[{"key":"k","value":"v"}],"limit":{"requestsPerUnit":4294967296,"unit":"SECOND"}}]}`, "requestsPerUnit"},
		{"non-UTF-8 value", "{\"domain\":\"edge\",\"descriptors\":[{\"entries\":[{\"key\":\"k\",\"value\":\"\xff\xfe\"}]}]}", "UTF-8"},
		{"non-UTF-8 domain", "{\"domain\":\"ed\xc3\",\"descriptors\":[" + entry + "]}", "UTF-8"},
		{"deeply nested value", `{"domain":"edge","descriptors":[{"entries":[{"key":"k","value":` + strings.Repeat(`{"a":`, 5000) + `1` + strings.Repeat("}", 5000) + `}]}]}`, "not a RateLimitRequest"},
		{"deeply nested unknown", `{"x":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`, "not a RateLimitRequest"},
		{"negative hits override", `{"domain":"edge","descriptors":[{"entries":[{"key":"k","value":"v"}],"isNegativeHits":true}]}`, "is_negative_hits"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := postJSON(t, h, tc.body)
			if a.code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400 (body %q)", a.code, a.body)
			}
			if !strings.HasPrefix(a.contentType, "text/plain") {
				t.Errorf("content type %q, want text/plain", a.contentType)
			}
			if !strings.HasPrefix(a.body, "bad request: ") || !strings.Contains(a.body, tc.want) || !strings.Contains(a.body, "send e.g. {") {
				t.Errorf("body %q: want a bad request naming %q and an example", a.body, tc.want)
			}
			if len(a.body) > maxErrorEcho+len(jsonExample)+200 {
				t.Errorf("message of %d bytes: the client's body is echoed", len(a.body))
			}
		})
	}
	// Nothing was counted.
	if n := len(e.store.takes()); n != 0 {
		t.Errorf("%d store calls for bad requests, want none", n)
	}
}

func TestJSONBodyLimit(t *testing.T) {
	e := newEnv(t, Settings{})
	const limit = 4096
	h := e.srv.JSONHandler(limit)
	big := `{"domain":"edge","descriptors":[{"entries":[{"key":"k","value":"` + strings.Repeat("v", limit) + `"}]}]}`
	if a := postJSON(t, h, big); a.code != http.StatusRequestEntityTooLarge || !strings.Contains(a.body, "limits.max_message_bytes") {
		t.Errorf("declared length over the limit: %d %q, want 413 naming limits.max_message_bytes", a.code, a.body)
	}
	// Without a Content-Length (chunked), the read stops at the limit.
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/json", io.MultiReader(strings.NewReader(big), infiniteReader{}))
	req.ContentLength = -1
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("endless chunked body: %d %q, want 413", rec.Code, rec.Body.String())
	}
	// Just under the limit is fine.
	if a := postJSON(t, h, ipBody); a.code != 200 {
		t.Errorf("small body: %d %q, want 200", a.code, a.body)
	}
}

// infiniteReader returns spaces forever.
type infiniteReader struct{}

func (infiniteReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = ' '
	}
	return len(p), nil
}

func TestJSONStoreFailure(t *testing.T) {
	tests := []struct {
		name     string
		mode     chain.FailureMode
		wantCode int
		want     string
		answer   string // extauthz_store_failures_total's answer label
	}{
		{"envoy", chain.FailEnvoy, http.StatusServiceUnavailable, "retry later", "unavailable"},
		{"open", chain.FailOpen, http.StatusOK, `"overallCode":"OK"`, "ok"},
		{"closed", chain.FailClosed, http.StatusTooManyRequests, `"overallCode":"OVER_LIMIT"`, "over_limit"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Settings{Failure: chain.FailurePolicy{Default: tc.mode}})
			e.store.fail(errBackend)
			a := postJSON(t, e.srv.JSONHandler(0), ipBody)
			if a.code != tc.wantCode || !strings.Contains(a.body, tc.want) {
				t.Errorf("got %d %q, want %d with %q", a.code, a.body, tc.wantCode, tc.want)
			}
			// Counted as /json's, not the gRPC API's.
			if got := testutil.ToFloat64(e.srv.metrics.failures.WithLabelValues("json", tc.answer)); got != 1 {
				t.Errorf("store failures of api json, answer %s: got %v, want 1", tc.answer, got)
			}
		})
	}
}

func TestJSONCanceled(t *testing.T) {
	e := newEnv(t, Settings{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.store.fail(errBackend)
	rec := httptest.NewRecorder()
	e.srv.JSONHandler(0).ServeHTTP(rec, httptest.NewRequestWithContext(ctx, http.MethodPost, "/json", strings.NewReader(ipBody)))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("canceled request: %d %q, want 503", rec.Code, rec.Body.String())
	}
}

func TestJSONMetrics(t *testing.T) {
	e := newEnv(t, Settings{})
	h := e.srv.JSONHandler(0)
	for _, body := range []string{ipBody, ipBody, ipBody, "{", `{"domain":"edge"}`} {
		postJSON(t, h, body)
	}
	e.call(t, request("edge", desc("remote_address", "10.0.0.2")))
	want := `
# HELP extauthz_requests_total Requests answered, by API, domain and code (ok, over_limit or the gRPC error).
# TYPE extauthz_requests_total counter
extauthz_requests_total{api="json",code="invalid_argument",domain="_unknown"} 1
extauthz_requests_total{api="json",code="invalid_argument",domain="edge"} 1
extauthz_requests_total{api="json",code="ok",domain="edge"} 2
extauthz_requests_total{api="json",code="over_limit",domain="edge"} 1
extauthz_requests_total{api="ratelimit",code="ok",domain="edge"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "extauthz_requests_total"); err != nil {
		t.Error(err)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() == "extauthz_request_duration_seconds" {
			series = len(mf.GetMetric())
		}
	}
	if series != 4 {
		t.Errorf("%d duration series, want 4 (json ok, over_limit and invalid_argument; ratelimit ok)", series)
	}
}

func TestJSONRoute(t *testing.T) {
	e := newEnv(t, Settings{})
	srv := httptest.NewServer(NewAdmin(AdminOptions{
		Gatherer: e.reg,
		Ready:    e.srv.Ready,
		Config:   func() []byte { return nil },
		JSON:     e.srv.JSONHandler(0),
	}))
	defer srv.Close()
	resp, err := srv.Client().Post(srv.URL+"/json", "application/json", strings.NewReader(ipBody))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("POST /json: %d, want 200", resp.StatusCode)
	}
	for _, m := range []string{http.MethodGet, http.MethodPut, http.MethodDelete} {
		req, _ := http.NewRequest(m, srv.URL+"/json", strings.NewReader(ipBody))
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "POST" {
			t.Errorf("%s /json: %d (Allow %q), want 405 allowing POST", m, resp.StatusCode, resp.Header.Get("Allow"))
		}
	}
	// Without a JSON handler there is no /json.
	bare := httptest.NewServer(NewAdmin(AdminOptions{Gatherer: e.reg, Ready: e.srv.Ready, Config: func() []byte { return nil }}))
	defer bare.Close()
	resp, err = bare.Client().Post(bare.URL+"/json", "application/json", strings.NewReader(ipBody))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /json without a handler: %d, want 404", resp.StatusCode)
	}
}

func TestEcho(t *testing.T) {
	long := strings.Repeat("é", maxErrorEcho)
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"bad \xff byte", "bad \uFFFD byte"},
		{long, long[:maxErrorEcho] + "…"},
		{"x" + long, "x" + long[:maxErrorEcho-2] + "…"}, // never cut inside a rune
	}
	for _, tc := range tests {
		if got := echo(tc.in); got != tc.want {
			t.Errorf("echo(%.20q…) = %.40q…, want %.40q…", tc.in, got, tc.want)
		}
	}
}

// FuzzJSONHandler sends arbitrary bodies to /json: nothing panics, every
// answer is one of the documented ones, and a decision is a protojson
// RateLimitResponse whose overall code matches its status.
func FuzzJSONHandler(f *testing.F) {
	for _, s := range []string{ipBody, loginBody, "{}", `{"domain":"edge","descriptors":[{}]}`, "\xff", `{"x":[[[[]]]]}`} {
		f.Add([]byte(s))
	}
	// A bare memstore, not newEnv's recording store, whose record would
	// grow with every input.
	mem, err := memstore.New(memstore.Options{MaxKeys: 10_000, SweepInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = mem.Close() })
	snap, err := NewSnapshot(testRules(f), Settings{}, nil)
	if err != nil {
		f.Fatal(err)
	}
	srv, err := New(Options{Store: mem}, snap)
	if err != nil {
		f.Fatal(err)
	}
	h := srv.JSONHandler(1 << 16)
	f.Fuzz(func(t *testing.T, body []byte) {
		a := postJSON(t, h, string(body))
		switch a.code {
		case http.StatusOK, http.StatusTooManyRequests:
			resp := decodeAnswer(t, a)
			want := rlsv3.RateLimitResponse_OK
			if a.code == http.StatusTooManyRequests {
				want = rlsv3.RateLimitResponse_OVER_LIMIT
			}
			if resp.OverallCode != want {
				t.Fatalf("status %d with overall code %v", a.code, resp.OverallCode)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if !strings.HasPrefix(a.contentType, "text/plain") {
				t.Fatalf("status %d with content type %q", a.code, a.contentType)
			}
		default:
			t.Fatalf("status %d (body %q): not a documented answer", a.code, a.body)
		}
	})
}
