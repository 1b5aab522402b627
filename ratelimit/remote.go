package ratelimit

import (
	"context"
	"crypto/tls"
	"fmt"
	"time"

	"google.golang.org/grpc"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/rlsclient"
)

// RemoteOptions configures a remote Limiter. Zero values are the
// documented defaults.
type RemoteOptions struct {
	// Timeout bounds each decision (default 250ms); a caller's earlier
	// deadline wins. Negative: no deadline of the limiter's own.
	Timeout time.Duration
	// FailureMode answers when the service is down, late, or cannot decide
	// (default FailError).
	FailureMode FailureMode
	// FailClosedRetryAfter is the RetryAfter of a FailClosed answer
	// (default 1s).
	FailClosedRetryAfter time.Duration
	// TLS, when not nil, secures the connection (default plaintext).
	TLS *tls.Config
	// DialOptions are added to the gRPC client's. Unstable: grpc-go's API.
	DialOptions []grpc.DialOption
}

// Validate reports invalid options, each error a *field.Error.
func (o *RemoteOptions) Validate() error {
	if o.FailureMode > FailClosed {
		return field.Errorf("FailureMode", "unknown failure mode %d: want error, open or closed", o.FailureMode)
	}
	if o.FailClosedRetryAfter < 0 {
		return field.Errorf("FailClosedRetryAfter", "%v is negative", o.FailClosedRetryAfter)
	}
	return nil
}

// Dial returns a Limiter that asks the extauthz RateLimitService at addr
// (host:port). It does not connect: the first Decide does, and while the
// service is unreachable Decide answers by o.FailureMode. ctx is not kept.
func Dial(ctx context.Context, addr string, o RemoteOptions) (*Limiter, error) {
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("ratelimit: dial: %w", err)
	}
	c, err := rlsclient.Dial(addr, rlsclient.Options{Timeout: o.Timeout, TLS: o.TLS, DialOptions: o.DialOptions})
	if err != nil {
		return nil, fmt.Errorf("ratelimit: %w", err)
	}
	wait := o.FailClosedRetryAfter
	if wait == 0 {
		wait = time.Second
	}
	return &Limiter{remote: c, failure: o.FailureMode, closedWait: wait, closers: []func() error{c.Close}}, nil
}
