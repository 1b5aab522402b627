// Package rlsclient is a client of Envoy's RateLimitService v3 (the API a
// running extauthz serves), shared by the ratelimit package's remote mode
// and the command line.
package rlsclient

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// DefaultTimeout is the deadline of one call when Options.Timeout is zero.
const DefaultTimeout = 250 * time.Millisecond

// Options configures a Client. Zero values are the documented defaults.
type Options struct {
	// Timeout bounds each call (default DefaultTimeout); a caller's earlier
	// deadline wins. A negative value means no deadline of the client's own.
	Timeout time.Duration
	// TLS, when not nil, secures the connection (default plaintext).
	TLS *tls.Config
	// DialOptions are appended to the client's own; unstable: they expose
	// grpc-go's API.
	DialOptions []grpc.DialOption
}

// Client calls a RateLimitService. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	rls     rlsv3.RateLimitServiceClient
	timeout time.Duration
}

// Dial returns a client of the RateLimitService at addr (host:port, or any
// gRPC target). It does not connect: the first call does, and a server that
// is down makes calls fail with codes.Unavailable (see Unavailable).
func Dial(addr string, o Options) (*Client, error) {
	if addr == "" {
		return nil, errors.New("rlsclient: empty address")
	}
	creds := insecure.NewCredentials()
	if o.TLS != nil {
		creds = credentials.NewTLS(o.TLS)
	}
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(creds)}, o.DialOptions...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("rlsclient: dial %s: %w", addr, err)
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &Client{conn: conn, rls: rlsv3.NewRateLimitServiceClient(conn), timeout: timeout}, nil
}

// ShouldRateLimit asks the service for a decision within the client's
// timeout. Errors are gRPC status errors, as the service or the transport
// returned them.
func (c *Client) ShouldRateLimit(ctx context.Context, req *rlsv3.RateLimitRequest) (*rlsv3.RateLimitResponse, error) {
	if c.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	return c.rls.ShouldRateLimit(ctx, req)
}

// Close closes the connection.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("rlsclient: close: %w", err)
	}
	return nil
}

// Unavailable reports whether err means that no decision could be made
// (service down or unreachable, out of time, or the service's own
// UNAVAILABLE answer when its backends failed), as opposed to a rejected
// request.
func Unavailable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}
