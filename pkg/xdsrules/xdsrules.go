// Package xdsrules subscribes to rate limit rules served by an xDS
// management server (the RateLimitConfig resources of envoyproxy/ratelimit's
// CONFIG_TYPE=GRPC_XDS_SOTW), over an aggregated (ADS) state-of-the-world
// stream: each update is handed to the caller, which installs it or refuses
// it; an installed update is ACKed, a refused one NACKed with the reason,
// and a broken stream is opened again with exponential backoff.
package xdsrules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// TypeURL is the type of the resources subscribed to.
const TypeURL = resource.RateLimitConfigType

// wrappedTypeURL is the type of a resource wrapped with a name and a TTL
// (discovery.v3.Resource), which SotW servers may send instead.
const wrappedTypeURL = resource.APITypePrefix + "envoy.service.discovery.v3.Resource"

// maxErrorDetail bounds the error_detail message of a NACK.
const maxErrorDetail = 4 << 10

// Update is one state of the world: every RateLimitConfig the server holds
// for this node, and the version it names them by.
type Update struct {
	Version string
	Configs []*rlsconfv3.RateLimitConfig
}

// Options configure a Client. Apply is required.
type Options struct {
	// Apply installs the rules of u, atomically, or returns why it cannot
	// (the previous rules then keep serving and the update is NACKed with
	// the error's text). It is called on Run's goroutine, one update at a
	// time, and may block for as long as installing takes.
	Apply func(ctx context.Context, u Update) error
	// Logger receives connection and update events (default
	// slog.Default()).
	Logger *slog.Logger
	// Metrics records updates and the connection (nil: none).
	Metrics *Metrics
}

// Client is a subscription to one management server. Run drives it.
type Client struct {
	s     Settings
	opts  Options
	log   *slog.Logger
	node  *corev3.Node
	md    metadata.MD
	dial  []grpc.DialOption
	ready atomic.Bool
	// applied is the version of the last update applied ("" before the
	// first); rejected the version last NACKed ("" after an ACK) and
	// nackDelay the delay before NACKing it again. Only Run's goroutine
	// uses them.
	applied, rejected string
	nackDelay         time.Duration
	// current are the configs of the last update applied, by name (for
	// TTL heartbeats, which name a resource without sending it again).
	current map[string]*rlsconfv3.RateLimitConfig
}

// New returns a client for s (defaults filled in here). It checks s and
// reads the TLS files, but contacts nobody until Run.
func New(s Settings, opts Options) (*Client, error) {
	s = s.WithDefaults()
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("xdsrules: %w", err)
	}
	if opts.Apply == nil {
		return nil, errors.New("xdsrules: Options.Apply is required")
	}
	c := &Client{s: s, opts: opts, log: opts.Logger, node: node(s), md: metadata.MD{}}
	if c.log == nil {
		c.log = slog.Default()
	}
	for k, v := range s.Headers {
		c.md.Set(k, string(v))
	}
	creds := insecure.NewCredentials()
	if tc, err := s.TLS.Config(); err != nil {
		return nil, fmt.Errorf("xdsrules: tls: %w", err)
	} else if tc != nil {
		creds = credentials.NewTLS(tc)
	}
	c.dial = []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(s.MaxMessageBytes)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: s.InitialBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: s.MaxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	c.ready.Store(s.ReadyWithoutRules)
	return c, nil
}

// node is the Node the client presents.
func node(s Settings) *corev3.Node {
	n := &corev3.Node{Id: s.NodeID, Cluster: s.NodeCluster, UserAgentName: "extauthz"}
	if len(s.NodeMetadata) > 0 {
		n.Metadata = &structpb.Struct{Fields: make(map[string]*structpb.Value, len(s.NodeMetadata))}
		for k, v := range s.NodeMetadata {
			n.Metadata.Fields[k] = structpb.NewStringValue(v)
		}
	}
	return n
}

// Ready returns nil once an update has been applied (at once with
// ReadyWithoutRules), else an error that says what is awaited.
func (c *Client) Ready() error {
	if c.ready.Load() {
		return nil
	}
	return fmt.Errorf("no rules yet from the xDS management server at %s (node_id %q): check that it is up and serves RateLimitConfig resources for this node", c.s.Address, c.s.NodeID)
}

// Run subscribes until ctx is done, opening the stream again after every
// failure with exponential backoff, and returns nil then. It returns an
// error only when the gRPC channel cannot be created at all.
func (c *Client) Run(ctx context.Context) error {
	conn, err := grpc.NewClient(c.s.Address, c.dial...)
	if err != nil {
		return fmt.Errorf("xdsrules: %s: %w", c.s.Address, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	delay := c.s.InitialBackoff
	for {
		received, err := c.stream(ctx, ads)
		if ctx.Err() != nil {
			return nil
		}
		if received {
			delay = c.s.InitialBackoff
		}
		wait := jitter(delay)
		c.opts.Metrics.streamFailed()
		c.log.Warn("xDS stream to the management server failed; the current rules keep serving, reconnecting. "+
			"If it persists, check rules_xds (address, tls) and that the management server is up",
			"addr", c.s.Address, "err", err, "retry_in", wait.Round(time.Millisecond))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		delay = min(2*delay, c.s.MaxBackoff)
	}
}

// jitter returns d randomised by ±20%.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// stream runs one ADS stream until it fails; received reports whether it
// delivered a response.
func (c *Client) stream(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) (received bool, err error) {
	sctx, cancel := context.WithCancel(metadata.NewOutgoingContext(ctx, c.md))
	defer cancel()
	// Not WaitForReady: while the server cannot be reached the call fails
	// with the reason (refused, TLS handshake, ...), which Run logs.
	st, err := ads.StreamAggregatedResources(sctx)
	if err != nil {
		return false, err
	}
	// Resuming with the version applied lets the server skip an unchanged
	// state of the world.
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: TypeURL, VersionInfo: c.applied}); err != nil {
		return false, recvErr(st, err)
	}
	c.log.Info("xDS stream open", "addr", c.s.Address, "node_id", c.s.NodeID, "version", c.applied)
	c.opts.Metrics.connected(true)
	defer c.opts.Metrics.connected(false)
	for {
		resp, err := st.Recv()
		if err != nil {
			return received, err
		}
		received = true
		req := c.handle(ctx, resp)
		if ctx.Err() != nil {
			return received, ctx.Err()
		}
		if err := st.Send(req); err != nil {
			return received, recvErr(st, err)
		}
	}
}

// recvErr returns the stream's status after Send failed with err (Send
// reports io.EOF; the reason is in Recv's error).
func recvErr(st grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse], err error) error {
	if _, rerr := st.Recv(); rerr != nil {
		return rerr
	}
	return err
}

// handle applies resp and returns its ACK or NACK.
func (c *Client) handle(ctx context.Context, resp *discoveryv3.DiscoveryResponse) *discoveryv3.DiscoveryRequest {
	req := &discoveryv3.DiscoveryRequest{Node: c.node, TypeUrl: TypeURL, ResponseNonce: resp.GetNonce()}
	u, err := c.decode(resp)
	if err == nil {
		err = c.opts.Apply(ctx, u)
	}
	if err != nil {
		c.reject(ctx, resp.GetVersionInfo(), err)
		req.VersionInfo = c.applied
		req.ErrorDetail = &status.Status{Code: int32(codes.InvalidArgument), Message: truncate(err.Error(), maxErrorDetail)}
		return req
	}
	c.applied, c.rejected, c.nackDelay = resp.GetVersionInfo(), "", 0
	c.current = make(map[string]*rlsconfv3.RateLimitConfig, len(u.Configs))
	for _, rc := range u.Configs {
		c.current[rc.GetName()] = rc
	}
	c.ready.Store(true)
	c.opts.Metrics.update(true)
	c.log.Info("xDS update applied", "version", c.applied, "configs", len(u.Configs))
	req.VersionInfo = c.applied
	return req
}

// reject counts and logs the rejection of version. A version rejected
// again at once (a server that resends it after every NACK, as
// go-control-plane's snapshot cache does) is neither counted nor logged
// again, and its NACK waits a backoff delay, so that the two do not spin.
func (c *Client) reject(ctx context.Context, version string, err error) {
	if version != c.rejected || version == "" {
		c.rejected, c.nackDelay = version, 0
		c.opts.Metrics.update(false)
		c.log.Error("xDS update rejected (NACK); the previous rules keep serving. Fix the RateLimitConfig resources on the management server",
			"version", version, "applied_version", c.applied, "err", err)
		return
	}
	c.nackDelay = min(max(2*c.nackDelay, c.s.InitialBackoff), c.s.MaxBackoff)
	c.log.Debug("xDS update sent again and rejected again", "version", version, "nack_in", c.nackDelay)
	t := time.NewTimer(jitter(c.nackDelay))
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// decode unpacks the RateLimitConfig resources of resp. A resource wrapped
// without content is a TTL heartbeat: the config of that name applied last
// stays.
func (c *Client) decode(resp *discoveryv3.DiscoveryResponse) (Update, error) {
	if t := resp.GetTypeUrl(); t != TypeURL {
		return Update{}, fmt.Errorf("response of type %q: this client subscribes to %s only", t, TypeURL)
	}
	u := Update{Version: resp.GetVersionInfo(), Configs: make([]*rlsconfv3.RateLimitConfig, 0, len(resp.GetResources()))}
	for i, res := range resp.GetResources() {
		if res.GetTypeUrl() == wrappedTypeURL {
			var w discoveryv3.Resource
			if err := anypb.UnmarshalTo(res, &w, proto.UnmarshalOptions{}); err != nil {
				return Update{}, fmt.Errorf("resources[%d]: %w", i, err)
			}
			res = w.GetResource()
			if res == nil {
				rc, ok := c.current[w.GetName()]
				if !ok {
					return Update{}, fmt.Errorf("resources[%d]: a heartbeat (no content) for %q, which no update applied holds: send the resource", i, w.GetName())
				}
				u.Configs = append(u.Configs, rc)
				continue
			}
		}
		if t := res.GetTypeUrl(); t != TypeURL {
			return Update{}, fmt.Errorf("resources[%d] is of type %q, want %s", i, t, TypeURL)
		}
		rc := new(rlsconfv3.RateLimitConfig)
		if err := anypb.UnmarshalTo(res, rc, proto.UnmarshalOptions{}); err != nil {
			return Update{}, fmt.Errorf("resources[%d]: %w", i, err)
		}
		u.Configs = append(u.Configs, rc)
	}
	return u, nil
}

// truncate cuts s to at most n bytes, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-len(" ...")] + " ..."
}
