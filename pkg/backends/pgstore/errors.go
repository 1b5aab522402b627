package pgstore

import (
	"context"
	"errors"
	"io"
	"net"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Error kinds returned by ErrorKind, a bounded set for metric labels.
const (
	KindNone       = ""
	KindCanceled   = "canceled"
	KindTimeout    = "timeout"
	KindConnection = "connection"
	KindSchema     = "schema"
	KindServer     = "server"
	KindReply      = "reply"
	KindInvalid    = "invalid"
	KindOther      = "other"
)

// ErrorKind classifies an error of Take (or Ping) for metrics: "" for
// nil, canceled (the caller's context), timeout (a deadline, including
// PostgreSQL's statement_timeout), connection (dial, I/O, a closed pool),
// schema (ErrSchema), server (any other error the server reported),
// reply (ErrBadReply), invalid (a request the limiter rejects) or other.
func ErrorKind(err error) string {
	if err == nil {
		return KindNone
	}
	return kindOf(err)
}

// kindOf is ErrorKind of a non-nil error. Its errors.As targets escape
// (an allocation each), which a successful call must not pay.
func kindOf(err error) string {
	var pgErr *pgconn.PgError
	var netErr net.Error
	var connErr *pgconn.ConnectError
	switch {
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded), pgconn.Timeout(err):
		return KindTimeout
	case errors.As(err, &pgErr) && pgErr.Code == "57014": // query_canceled: statement_timeout
		return KindTimeout
	case limiter.IsRequestError(err):
		return KindInvalid
	case errors.Is(err, ErrSchema):
		return KindSchema
	case errors.Is(err, ErrBadReply):
		return KindReply
	case errors.As(err, &pgErr):
		return KindServer
	case errors.As(err, &connErr), errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, net.ErrClosed):
		return KindConnection
	}
	return KindOther
}
