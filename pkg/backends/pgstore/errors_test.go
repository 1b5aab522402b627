package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/extauthz/extauthz/pkg/limiter"
)

func TestErrorKind(t *testing.T) {
	// OnCall classifies every call's error: a success must cost nothing.
	if n := testing.AllocsPerRun(100, func() { _ = ErrorKind(nil) }); n != 0 {
		t.Errorf("ErrorKind(nil) allocates %v times, want 0", n)
	}
	tests := []struct {
		err  error
		want string
	}{
		{nil, KindNone},
		{fmt.Errorf("take: %w", context.Canceled), KindCanceled},
		{context.DeadlineExceeded, KindTimeout},
		{&pgconn.PgError{Code: "57014"}, KindTimeout},
		{fmt.Errorf("%w: period", limiter.ErrInvalidLimit), KindInvalid},
		{fmt.Errorf("%w: no table", ErrSchema), KindSchema},
		{fmt.Errorf("%w: 3 rows", ErrBadReply), KindReply},
		{&pgconn.PgError{Code: "53300"}, KindServer},
		{&net.OpError{Op: "dial", Err: errors.New("refused")}, KindConnection},
		{io.ErrUnexpectedEOF, KindConnection},
		{errors.New("boom"), KindOther},
	}
	for _, tc := range tests {
		if got := ErrorKind(tc.err); got != tc.want {
			t.Errorf("ErrorKind(%v): got %q, want %q", tc.err, got, tc.want)
		}
	}
}
