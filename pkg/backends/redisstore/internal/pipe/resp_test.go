package pipe

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

// Outcomes of readReply, for the table tests.
const (
	okReply    = iota // nil error
	errReply          // an Error
	unexpected        // ErrUnexpected
	protocol          // ErrProtocol
	eof               // io.EOF or io.ErrUnexpectedEOF: the input ended
)

func outcome(err error) int {
	var e Error
	switch {
	case err == nil:
		return okReply
	case errors.As(err, &e):
		return errReply
	case errors.Is(err, ErrUnexpected):
		return unexpected
	case errors.Is(err, ErrProtocol):
		return protocol
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return eof
	}
	return -1
}

// nested returns depth nested one-element arrays around ":1".
func nested(depth int) string {
	return strings.Repeat("*1\r\n", depth) + ":1\r\n"
}

func TestReadReply(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want int
		// for okReply: the reply; for errReply: Str holds the error text.
		reply Reply
	}{
		{"simple string", "+OK\r\n", okReply, Reply{Kind: '+', Str: []byte("OK")}},
		{"empty simple string", "+\r\n", okReply, Reply{Kind: '+', Str: []byte{}}},
		{"simple string with CR inside", "+a\rb\r\n", okReply, Reply{Kind: '+', Str: []byte("a\rb")}},
		{"error", "-ERR x\r\n", errReply, Reply{Str: []byte("ERR x")}},
		{"integer", ":42\r\n", okReply, Reply{Kind: ':', Int: 42, Str: []byte{}}},
		{"negative integer", ":-7\r\n", okReply, Reply{Kind: ':', Int: -7, Str: []byte{}}},
		{"bulk string", "$3\r\nfoo\r\n", okReply, Reply{Kind: '$', Str: []byte("foo")}},
		{"bulk string holding CRLF", "$4\r\na\r\nb\r\n", okReply, Reply{Kind: '$', Str: []byte("a\r\nb")}},
		{"null bulk string", "$-1\r\n", okReply, Reply{Kind: '$', Nil: true, Str: []byte{}}},
		{"empty bulk string", "$0\r\n\r\n", okReply, Reply{Kind: '$', Str: []byte{}}},
		{"nested arrays", "*2\r\n*1\r\n:1\r\n$1\r\na\r\n", unexpected, Reply{}},
		{"null array", "*-1\r\n", unexpected, Reply{}},
		{"empty array", "*0\r\n", unexpected, Reply{}},
		{"errors inside an array", "*3\r\n-ERR one\r\n+OK\r\n-ERR two\r\n", unexpected, Reply{}},
		{"error inside a nested array", "*1\r\n*2\r\n-ERR deep\r\n$-1\r\n", unexpected, Reply{}},
		{"arrays nested maxDepth deep", nested(maxDepth), unexpected, Reply{}},

		{"unknown type byte", "?x\r\n", protocol, Reply{}},
		{"RESP3 type byte", "_\r\n", protocol, Reply{}},
		{"missing CR", "+OK\n", protocol, Reply{}},
		{"empty line", "\r\n", protocol, Reply{}},
		{"bad integer", ":4x2\r\n", protocol, Reply{}},
		{"empty integer", ":\r\n", protocol, Reply{}},
		{"bulk length over maxBulk", "$" + strconv.Itoa(maxBulk+1) + "\r\n", protocol, Reply{}},
		{"bulk length -2", "$-2\r\n", protocol, Reply{}},
		{"bulk not ended by CRLF", "$3\r\nfooXY", protocol, Reply{}},
		{"array length -2", "*-2\r\n", protocol, Reply{}},
		{"array over maxArray", "*" + strconv.Itoa(maxArray+1) + "\r\n", protocol, Reply{}},
		{"bad array length", "*x\r\n", protocol, Reply{}},
		{"arrays nested deeper than maxDepth", nested(maxDepth + 1), protocol, Reply{}},
		{"bad element in an array", "*2\r\n:1\r\n?\r\n", protocol, Reply{}},
		{"bad bulk in an array", "*1\r\n$-5\r\n", protocol, Reply{}},
		{"line longer than the buffer", "+" + strings.Repeat("a", 5000) + "\r\n", protocol, Reply{}},

		{"nothing", "", eof, Reply{}},
		{"line without its end", "+OK", eof, Reply{}},
		{"truncated bulk", "$3\r\nfo", eof, Reply{}},
		{"bulk without its CRLF", "$3\r\nfoo", eof, Reply{}},
		{"truncated array", "*3\r\n:1\r\n", eof, Reply{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A reply that keeps the stream in step is followed by another;
			// input meant to end early is not.
			in := tt.in
			if tt.want != eof {
				in += "+NEXT\r\n"
			}
			br := bufio.NewReaderSize(strings.NewReader(in), 4096)
			r := Reply{Kind: 'x', Str: []byte("stale"), Int: 9, Nil: true}
			err := readReply(br, &r)
			if got := outcome(err); got != tt.want {
				t.Fatalf("readReply(%q) = %v (outcome %d), want outcome %d", truncate([]byte(tt.in)), err, got, tt.want)
			}
			switch tt.want {
			case okReply:
				if r.Kind != tt.reply.Kind || !bytes.Equal(r.Str, tt.reply.Str) || r.Int != tt.reply.Int || r.Nil != tt.reply.Nil {
					t.Errorf("reply = {%q %q %d %v}, want {%q %q %d %v}",
						r.Kind, r.Str, r.Int, r.Nil, tt.reply.Kind, tt.reply.Str, tt.reply.Int, tt.reply.Nil)
				}
			case errReply:
				if e := err.(Error); string(e) != string(tt.reply.Str) {
					t.Errorf("error = %q, want %q", e, tt.reply.Str)
				}
			default:
				return // the stream may be out of step
			}
			if err := readReply(br, &r); err != nil || r.Kind != '+' || string(r.Str) != "NEXT" {
				t.Errorf("next reply = %q %q, %v; want +NEXT (stream out of step)", r.Kind, r.Str, err)
			}
		})
	}
}

// A stream of replies read into one Reply: each read resets what the last
// one left, and a bulk string reuses Str's room.
func TestReadReplyReuse(t *testing.T) {
	in := "$-1\r\n:5\r\n*1\r\n$3\r\nabc\r\n$3\r\nfoo\r\n+OK\r\n"
	br := bufio.NewReader(strings.NewReader(in))
	r := Reply{Str: make([]byte, 0, 64)}
	room := &r.Str[:1][0]

	steps := []struct {
		want  Reply
		unexp bool
	}{
		{want: Reply{Kind: '$', Nil: true}},
		{want: Reply{Kind: ':', Int: 5}},
		{unexp: true},
		{want: Reply{Kind: '$', Str: []byte("foo")}},
		{want: Reply{Kind: '+', Str: []byte("OK")}},
	}
	for i, s := range steps {
		err := readReply(br, &r)
		if s.unexp {
			if !errors.Is(err, ErrUnexpected) {
				t.Fatalf("step %d: err = %v, want ErrUnexpected", i, err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if r.Kind != s.want.Kind || string(r.Str) != string(s.want.Str) || r.Int != s.want.Int || r.Nil != s.want.Nil {
			t.Errorf("step %d: reply = {%q %q %d %v}, want {%q %q %d %v}",
				i, r.Kind, r.Str, r.Int, r.Nil, s.want.Kind, s.want.Str, s.want.Int, s.want.Nil)
		}
		if len(r.Str) > 0 && &r.Str[0] != room {
			t.Errorf("step %d: Str was reallocated although it had room", i)
		}
	}
}

func TestAppendCommand(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		args   []string
		want   string
	}{
		{"no args", "", nil, "*0\r\n"},
		{"one", "", []string{"PING"}, "*1\r\n$4\r\nPING\r\n"},
		{"empty arg", "", []string{"SET", "k", ""}, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"},
		{"binary arg", "", []string{"SET", "a\r\nb", "\x00"}, "*3\r\n$3\r\nSET\r\n$4\r\na\r\nb\r\n$1\r\n\x00\r\n"},
		{"long arg", "", []string{strings.Repeat("x", 12)}, "*1\r\n$12\r\n" + strings.Repeat("x", 12) + "\r\n"},
		{"appends", "*1\r\n$4\r\nPING\r\n", []string{"GET", "k"}, "*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := appendCommand([]byte(tt.prefix), tt.args)
			if string(got) != tt.want {
				t.Errorf("appendCommand(%q, %q) = %q, want %q", tt.prefix, tt.args, got, tt.want)
			}
		})
	}
}

// FuzzReadReply reads replies until the input runs out or gets out of
// step: it must not panic, must only fail in the documented ways, must not
// hand out a string over maxBulk, and must consume input with every reply
// it reads (so that a stream of them ends).
func FuzzReadReply(f *testing.F) {
	for _, s := range []string{
		"+OK\r\n", "-ERR x\r\n:42\r\n", "$3\r\nfoo\r\n$-1\r\n", "*2\r\n*1\r\n:1\r\n$1\r\na\r\n",
		nested(maxDepth + 1), "$" + strconv.Itoa(maxBulk+1) + "\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16) // short lines overflow it
		var r Reply
		for n := 0; ; n++ {
			if n > len(data)/3 { // every reply takes 3 bytes at least
				t.Fatalf("%d replies read from %d bytes", n, len(data))
			}
			err := readReply(br, &r)
			if len(r.Str) > maxBulk {
				t.Fatalf("Str of %d bytes", len(r.Str))
			}
			switch outcome(err) {
			case okReply:
				if r.Kind != '+' && r.Kind != ':' && r.Kind != '$' {
					t.Fatalf("reply of kind %q", r.Kind)
				}
				if r.Nil && (r.Kind != '$' || len(r.Str) != 0) {
					t.Fatalf("null reply {%q %q}", r.Kind, r.Str)
				}
			case errReply, unexpected:
			case protocol, eof:
				return
			default:
				t.Fatalf("undocumented error %v", err)
			}
		}
	})
}
