package pipe

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// Bounds on what the server may send, so that a broken or hostile peer
// cannot make the client allocate without limit.
const (
	maxBulk  = 64 << 20 // bytes in a bulk string
	maxDepth = 8        // nesting of arrays (which are read and discarded)
	maxArray = 1 << 20  // elements of an array
)

// readReply reads one reply into r (reusing r.Str's room). An error reply
// is returned as Error and a reply of another type (an array) as
// ErrUnexpected, both read in full; any other error leaves the stream out
// of step.
func readReply(br *bufio.Reader, r *Reply) error {
	line, err := readLine(br)
	if err != nil {
		return err
	}
	r.Kind, r.Int, r.Nil, r.Str = line[0], 0, false, r.Str[:0]
	switch line[0] {
	case '+':
		r.Str = append(r.Str, line[1:]...)
	case '-':
		return Error(line[1:])
	case ':':
		if r.Int, err = parseInt(line[1:]); err != nil {
			return err
		}
	case '$':
		n, err := parseInt(line[1:])
		switch {
		case err != nil:
			return err
		case n == -1:
			r.Nil = true
			return nil
		case n < 0 || n > maxBulk:
			return fmt.Errorf("%w: bulk length %d", ErrProtocol, n)
		}
		r.Str = grow(r.Str, int(n)+2)
		if _, err := io.ReadFull(br, r.Str); err != nil {
			r.Str = r.Str[:0] // nothing of a reply cut short is handed out
			return err
		}
		if r.Str[n] != '\r' || r.Str[n+1] != '\n' {
			return fmt.Errorf("%w: bulk string not ended by CRLF", ErrProtocol)
		}
		r.Str = r.Str[:n]
	case '*':
		if err := skipArray(br, line, 0); err != nil {
			return err
		}
		return fmt.Errorf("%w: an array", ErrUnexpected)
	default:
		return fmt.Errorf("%w: reply type %q", ErrProtocol, line[0])
	}
	return nil
}

// skipArray reads and discards the elements of the array whose header is
// line.
func skipArray(br *bufio.Reader, line []byte, depth int) error {
	n, err := parseInt(line[1:])
	switch {
	case err != nil:
		return err
	case depth >= maxDepth:
		return fmt.Errorf("%w: arrays nested deeper than %d", ErrProtocol, maxDepth)
	case n < -1 || n > maxArray:
		return fmt.Errorf("%w: array of %d elements", ErrProtocol, n)
	}
	var scratch Reply
	for range n { // n == -1: a null array, nothing follows
		peek, err := br.Peek(1)
		if err != nil {
			return err
		}
		if peek[0] != '*' {
			if err := readReply(br, &scratch); err != nil && !isReplyError(err) {
				return err
			}
			continue
		}
		sub, err := readLine(br)
		if err != nil {
			return err
		}
		if err := skipArray(br, sub, depth+1); err != nil {
			return err
		}
	}
	return nil
}

func isReplyError(err error) bool {
	_, ok := err.(Error)
	return ok
}

// readLine reads a line ending in CRLF and returns it without the CRLF; it
// is valid until the next read. A line longer than the reader's buffer is
// a protocol error (replies' header lines are short).
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		return nil, fmt.Errorf("%w: line longer than %d bytes", ErrProtocol, br.Size())
	}
	if err != nil {
		return nil, err
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: bad line %q", ErrProtocol, truncate(line))
	}
	return line[:len(line)-2], nil
}

func parseInt(b []byte) (int64, error) {
	n, err := strconv.ParseInt(string(b), 10, 64) // no allocation: the conversion does not escape
	if err != nil {
		return 0, fmt.Errorf("%w: bad number %q", ErrProtocol, truncate(b))
	}
	return n, nil
}

func grow(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}
