package redisstore

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/backends/redisstore/internal/pipe"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// Error kinds returned by ErrorKind, a bounded set for a metric label.
const (
	KindNone       = ""           // no error
	KindCanceled   = "canceled"   // the caller's context was canceled
	KindTimeout    = "timeout"    // a deadline or socket timeout, or no free connection in time
	KindConnection = "connection" // dial failure, reset or closed connection, closed client
	KindScript     = "script"     // the Lua script failed on the server
	KindServer     = "server"     // another Redis error reply (READONLY, OOM, LOADING, CLUSTERDOWN, ...)
	KindReply      = "reply"      // a reply the script never sends (ErrBadReply)
	KindInvalid    = "invalid"    // requests the store refused to send (limiter.ErrInvalidLimit, ...)
	KindOther      = "other"
)

// ErrorKind classifies an error returned by Take, Ping or LoadScript for the
// "errors by kind" metric.
func ErrorKind(err error) string {
	if err == nil {
		return KindNone
	}
	return kindOf(err)
}

// kindOf is ErrorKind of a non-nil error. Its errors.As targets escape
// (an allocation each), which a successful call must not pay.
func kindOf(err error) string {
	var netErr net.Error
	var rErr redis.Error
	switch {
	case errors.Is(err, context.Canceled):
		return KindCanceled
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, redis.ErrPoolTimeout):
		return KindTimeout
	case errors.As(err, &netErr) && netErr.Timeout():
		return KindTimeout
	case errors.Is(err, limiter.ErrInvalidLimit), errors.Is(err, limiter.ErrInvalidRequest), errors.Is(err, limiter.ErrUnknownAlgorithm):
		return KindInvalid
	case errors.Is(err, ErrBadReply), errors.Is(err, pipe.ErrUnexpected):
		return KindReply
	case errors.Is(err, pipe.ErrNotSent):
		return KindConnection // a failed dial or setup (AUTH, SELECT), a closed store
	case errors.As(err, &rErr):
		if isScriptError(rErr) {
			return KindScript
		}
		return KindServer
	case errors.As(err, &netErr), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolExhausted),
		errors.Is(err, pipe.ErrClosed), errors.Is(err, pipe.ErrProtocol):
		return KindConnection
	}
	return KindOther
}

// isScriptError reports errors raised while running the script: a Lua
// error, a failed redis.call inside it (Redis 7 appends "script: <sha>, on
// @user_script:<line>."), its own error reply, or a still missing script.
func isScriptError(err redis.Error) bool {
	msg := err.Error()
	return redis.HasErrorPrefix(err, "NOSCRIPT") ||
		strings.Contains(msg, "user_script") ||
		strings.Contains(msg, "Error running script") ||
		strings.Contains(msg, "extauthz take.lua")
}
