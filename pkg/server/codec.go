package server

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// utf8Codec is the server's gRPC codec (named "proto", installed with
// grpc.ForceServerCodecV2 on our server only). It is grpc-go's proto codec,
// except that a request whose proto3 string fields hold bytes that are not
// UTF-8 (which the proto codec refuses, so grpc answers INTERNAL before a
// handler runs, and Envoy's failure_mode_allow lets the request through) is
// decoded with each invalid byte sequence replaced by U+FFFD, and then
// counted like any other. The hot path is the proto codec's: the raw
// message is scrubbed and decoded again only when the first decode failed.
type utf8Codec struct {
	base encoding.CodecV2
}

func newUTF8Codec() utf8Codec {
	return utf8Codec{base: encoding.GetCodecV2(protocodec.Name)}
}

func (c utf8Codec) Name() string { return protocodec.Name }

func (c utf8Codec) Marshal(v any) (mem.BufferSlice, error) { return c.base.Marshal(v) }

// Unmarshal decodes data into v; see utf8Codec. An error that scrubbing does
// not cure (a malformed message) is the proto codec's.
func (c utf8Codec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.base.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	m, ok := v.(proto.Message)
	if !ok {
		return err
	}
	fixed, changed := scrubUTF8(data.Materialize(), m.ProtoReflect().Descriptor())
	if !changed {
		return err
	}
	if err2 := proto.Unmarshal(fixed, m); err2 != nil {
		return fmt.Errorf("after replacing invalid UTF-8: %w", err2)
	}
	return nil
}

// scrubUTF8 returns the wire-format message b of type md with every
// invalid UTF-8 sequence in its string fields (at any depth: nested and
// repeated messages, map entries) replaced by U+FFFD, and whether it
// replaced any. Everything else is copied as is. It returns b, false when b
// is not a well-formed message.
func scrubUTF8(b []byte, md protoreflect.MessageDescriptor) ([]byte, bool) {
	out, changed, ok := scrubMessage(nil, b, md, 0)
	if !ok || !changed {
		return b, false
	}
	return out, true
}

// maxScrubDepth bounds the nesting scrubMessage follows (the proto
// decoder's own default limit is 10000; ours is the stack's).
const maxScrubDepth = 100

// scrubMessage appends the scrubbed b to out; see scrubUTF8.
func scrubMessage(out, b []byte, md protoreflect.MessageDescriptor, depth int) (_ []byte, changed, ok bool) {
	if depth > maxScrubDepth {
		return out, false, false
	}
	fields := md.Fields()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out, false, false
		}
		if typ != protowire.BytesType {
			m := protowire.ConsumeFieldValue(num, typ, b[n:])
			if m < 0 {
				return out, false, false
			}
			out = append(out, b[:n+m]...)
			b = b[n+m:]
			continue
		}
		v, m := protowire.ConsumeBytes(b[n:])
		if m < 0 {
			return out, false, false
		}
		fd := fields.ByNumber(num)
		switch {
		case fd != nil && fd.Kind() == protoreflect.StringKind && !utf8.Valid(v):
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendString(out, strings.ToValidUTF8(string(v), "\uFFFD"))
			changed = true
		case fd != nil && fd.Kind() == protoreflect.MessageKind:
			sub, subChanged, subOK := scrubMessage(nil, v, fd.Message(), depth+1)
			if !subOK {
				return out, false, false
			}
			out = protowire.AppendTag(out, num, typ)
			out = protowire.AppendBytes(out, sub)
			changed = changed || subChanged
		default:
			out = append(out, b[:n+m]...)
		}
		b = b[n+m:]
	}
	return out, changed, true
}
