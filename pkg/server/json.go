package server

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
)

// jsonReadTimeout bounds the read of one /json request body, so that a
// client trickling its body cannot hold a connection (the admin server
// sets no read timeout, for its long-polling dashboard).
const jsonReadTimeout = 10 * time.Second

// jsonRecursionLimit bounds the nesting protojson follows. A
// RateLimitRequest nests 4 deep (request, descriptor, limit or entry,
// wrapper), so a deeper body is refused before it costs anything.
const jsonRecursionLimit = 16

// maxErrorEcho is the most of a decoder's message (which may quote the
// body) that an error answer repeats.
const maxErrorEcho = 256

// jsonExample is the shortest valid body, quoted by 400 answers.
const jsonExample = `{"domain": "D", "descriptors": [{"entries": [{"key": "K", "value": "V"}]}]}`

// jsonBuffers holds request body buffers; one that grew past
// maxPooledBody is dropped rather than kept.
var jsonBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledBody = 64 << 10

// JSONHandler returns the handler of POST /json: Envoy's RateLimitService
// over HTTP/1.1 for callers that do not speak gRPC (scripts, curl), as
// envoyproxy/ratelimit serves it. The body is a RateLimitRequest in
// protojson (field names in lowerCamelCase or as in the proto; unknown
// fields refused); the request goes through ShouldRateLimit's decision,
// bounds and failure modes, and its metrics count under api="json". The
// answer is the RateLimitResponse in protojson (application/json) with:
//
//   - 200 when the overall code is OK, 429 when it is OVER_LIMIT;
//   - 400 (text/plain, saying what is wrong) for a body that is not a
//     RateLimitRequest, or a request ShouldRateLimit refuses as
//     InvalidArgument (empty domain, no descriptors, an entry without a
//     key, beyond Settings.Bounds);
//   - 413 for a body over maxBodyBytes (limits.max_message_bytes, the
//     gRPC message bound; 0: DefaultMaxRecvMsgSize);
//   - 503 when the store cannot decide and the domain's failure mode is
//     envoy (envoyproxy/ratelimit answers 400 to every error; a client
//     should retry a 503, not drop its request as malformed), 504 on a
//     deadline, 500 for an internal error.
//
// It mounts nothing itself: NewAdmin serves it (AdminOptions.JSON).
func (s *Server) JSONHandler(maxBodyBytes int) http.Handler {
	if maxBodyBytes <= 0 {
		maxBodyBytes = DefaultMaxRecvMsgSize
	}
	return &jsonHandler{s: s, max: int64(maxBodyBytes)}
}

type jsonHandler struct {
	s   *Server
	max int64
}

func (h *jsonHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req, code, msg := h.read(w, r)
	if req == nil {
		h.s.observe(h.s.live.Load(), apiJSON, "", codeInvalidArgument, start)
		writeJSONError(w, code, msg)
		return
	}
	resp, err := h.s.rateLimit(r.Context(), apiJSON, req)
	if err != nil {
		code, msg := jsonErrorOf(err)
		writeJSONError(w, code, msg)
		return
	}
	body, err := protojson.Marshal(resp)
	if err != nil {
		writeJSONError(w, http.StatusInternalServerError, "internal error: encode the response: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if resp.GetOverallCode() == rlsv3.RateLimitResponse_OVER_LIMIT {
		w.WriteHeader(http.StatusTooManyRequests)
	}
	_, _ = w.Write(body)
}

// read decodes the request body of r, at most h.max bytes. On failure it
// returns nil with the status and message of the answer.
func (h *jsonHandler) read(w http.ResponseWriter, r *http.Request) (*rlsv3.RateLimitRequest, int, string) {
	if r.ContentLength > h.max {
		return nil, http.StatusRequestEntityTooLarge, h.tooLarge()
	}
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(jsonReadTimeout))
	buf := jsonBuffers.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledBody {
			buf.Reset()
			jsonBuffers.Put(buf)
		}
	}()
	buf.Reset()
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength)) // at most h.max: checked above
	}
	if _, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, h.max)); err != nil {
		if errors.As(err, new(*http.MaxBytesError)) {
			return nil, http.StatusRequestEntityTooLarge, h.tooLarge()
		}
		return nil, http.StatusBadRequest, "bad request: reading the body: " + err.Error() + "; send the whole body within " + jsonReadTimeout.String()
	}
	req := new(rlsv3.RateLimitRequest)
	opts := protojson.UnmarshalOptions{RecursionLimit: jsonRecursionLimit}
	if err := opts.Unmarshal(buf.Bytes(), req); err != nil {
		return nil, http.StatusBadRequest, fmt.Sprintf("bad request: the body is not a RateLimitRequest in JSON (%s); send e.g. %s", echo(err.Error()), jsonExample)
	}
	return req, 0, ""
}

func (h *jsonHandler) tooLarge() string {
	return fmt.Sprintf("request body too large: at most %d bytes (limits.max_message_bytes); send fewer or shorter descriptors", h.max)
}

// jsonErrorOf maps a ShouldRateLimit error (a gRPC status) to an HTTP
// status and a message saying what to do.
func jsonErrorOf(err error) (int, string) {
	st := status.Convert(err)
	msg := echo(st.Message())
	switch st.Code() {
	case codes.InvalidArgument:
		return http.StatusBadRequest, "bad request: " + msg + "; send e.g. " + jsonExample
	case codes.Unavailable, codes.Canceled:
		return http.StatusServiceUnavailable, msg + ": retry later; `extauthz health` shows which backend is down"
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout, msg + ": retry later"
	}
	return http.StatusInternalServerError, msg + ": the server logged the cause"
}

// writeJSONError answers code with msg as text/plain (http.Error, which
// also tells browsers not to sniff it: msg may quote the client's body).
func writeJSONError(w http.ResponseWriter, code int, msg string) {
	http.Error(w, msg, code)
}

// echo makes a message that may quote client input safe to repeat: valid
// UTF-8, at most maxErrorEcho bytes.
func echo(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) > maxErrorEcho {
		cut := maxErrorEcho
		for cut > 0 && !utf8.RuneStart(msg[cut]) {
			cut--
		}
		msg = msg[:cut] + "…"
	}
	return msg
}
