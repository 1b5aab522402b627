package server

import (
	"bytes"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// marked marshals m, then replaces every "@@" in the wire bytes by the
// two bytes 0xff 0xfe (not UTF-8), as a hostile client would send them.
func marked(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("@@"), []byte{0xff, 0xfe})
}

func hostileCheck(user string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Path:    "/a",
			Headers: map[string]string{"x-user": user, "x-other": "ok"},
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "x-user", Value: user}, {Key: "x-raw", RawValue: []byte("raw@@")}}},
		}},
	}}
}

func hostileRLS(key, value string) *rlsv3.RateLimitRequest {
	return &rlsv3.RateLimitRequest{Domain: "d", Descriptors: []*ratelimitv3.RateLimitDescriptor{
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: "remote_address", Value: "10.0.0.1"}}},
		{Entries: []*ratelimitv3.RateLimitDescriptor_Entry{{Key: key, Value: value}}},
	}}
}

func TestCodecReplacesInvalidUTF8(t *testing.T) {
	c := newUTF8Codec()
	t.Run("check", func(t *testing.T) {
		var got authv3.CheckRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(marked(t, hostileCheck("u@@x")))}, &got); err != nil {
			t.Fatal(err)
		}
		h := got.GetAttributes().GetRequest().GetHttp()
		if v := h.GetHeaders()["x-user"]; v != "u\uFFFDx" {
			t.Errorf("headers[x-user] = %q, want %q", v, "u\uFFFDx")
		}
		if v := h.GetHeaders()["x-other"]; v != "ok" {
			t.Errorf("headers[x-other] = %q, want ok", v)
		}
		hm := h.GetHeaderMap().GetHeaders()
		if len(hm) != 2 || hm[0].GetValue() != "u\uFFFDx" || string(hm[1].GetRawValue()) != "raw\xff\xfe" {
			t.Errorf("header_map = %v; want the string scrubbed and the bytes kept", hm)
		}
		if a := got.GetAttributes().GetSource().GetAddress().GetSocketAddress().GetAddress(); a != "10.0.0.1" {
			t.Errorf("source address = %q", a)
		}
	})
	t.Run("rls key and value", func(t *testing.T) {
		var got rlsv3.RateLimitRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(marked(t, hostileRLS("k@@", "@@v")))}, &got); err != nil {
			t.Fatal(err)
		}
		e := got.GetDescriptors()[1].GetEntries()[0]
		if e.GetKey() != "k\uFFFD" || e.GetValue() != "\uFFFDv" || got.GetDomain() != "d" {
			t.Errorf("got %v", &got)
		}
	})
	t.Run("valid messages decode as the proto codec decodes them", func(t *testing.T) {
		want := hostileRLS("k", "v")
		b, _ := proto.Marshal(want)
		var got rlsv3.RateLimitRequest
		if err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, &got); err != nil || !proto.Equal(&got, want) {
			t.Errorf("got %v, %v; want %v", &got, err, want)
		}
	})
	t.Run("malformed messages keep the proto codec's error", func(t *testing.T) {
		var got rlsv3.RateLimitRequest
		err := c.Unmarshal(mem.BufferSlice{mem.SliceBuffer([]byte{0x0a, 0x05, 'a'})}, &got)
		if err == nil {
			t.Fatal("truncated message decoded")
		}
		if strings.Contains(err.Error(), "after replacing") {
			t.Errorf("error %q: scrubbing a malformed message should not be attempted", err)
		}
	})
}

// TestScrubHotPathAllocations: a valid message costs what the proto codec
// costs (no scrub, no extra allocation).
func TestScrubHotPathAllocations(t *testing.T) {
	c, base := newUTF8Codec(), newUTF8Codec().base
	b, _ := proto.Marshal(hostileCheck("user"))
	data := mem.BufferSlice{mem.SliceBuffer(b)}
	var m authv3.CheckRequest
	ours := testing.AllocsPerRun(100, func() { _ = c.Unmarshal(data, &m) })
	theirs := testing.AllocsPerRun(100, func() { _ = base.Unmarshal(data, &m) })
	if ours > theirs {
		t.Errorf("%v allocations per valid message, the proto codec makes %v", ours, theirs)
	}
}

// FuzzScrubUTF8: a message that decodes is never changed; a scrubbed one
// scrubs to itself and never fails to decode for its UTF-8.
func FuzzScrubUTF8(f *testing.F) {
	f.Add(marked(f, hostileCheck("u@@")))
	f.Add(marked(f, hostileRLS("@@", "v@@")))
	f.Add([]byte{0x0a, 0x02, 0xff, 0xfe})
	f.Fuzz(func(t *testing.T, in []byte) {
		for _, m := range []proto.Message{&authv3.CheckRequest{}, &rlsv3.RateLimitRequest{}} {
			md := m.ProtoReflect().Descriptor()
			decodes := proto.Unmarshal(in, m) == nil
			out, changed := scrubUTF8(in, md)
			if decodes && changed {
				t.Fatalf("%s: a message that decodes was changed", md.FullName())
			}
			if !changed {
				if !bytes.Equal(out, in) {
					t.Fatalf("%s: unchanged but different bytes", md.FullName())
				}
				continue
			}
			if _, again := scrubUTF8(out, md); again {
				t.Fatalf("%s: scrubbing is not idempotent", md.FullName())
			}
			if err := proto.Unmarshal(out, m); err != nil && strings.Contains(err.Error(), "UTF-8") {
				t.Fatalf("%s: scrubbed message still fails on UTF-8: %v", md.FullName(), err)
			}
		}
	})
}
