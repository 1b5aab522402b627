// Package grpclimit limits gRPC server calls with a ratelimit.Decider:
// unary and stream interceptors, descriptors from the full method, the
// peer's address and metadata, refusals as ResourceExhausted with a
// RetryInfo detail and x-ratelimit-* trailers.
package grpclimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/ratelimit"
)

// Metadata keys of the rate-limit trailers.
const (
	LimitKey      = "x-ratelimit-limit"
	RemainingKey  = "x-ratelimit-remaining"
	ResetKey      = "x-ratelimit-reset"
	RetryAfterKey = "retry-after"
)

// KeyFunc reads one descriptor entry's value from a call: its context (with
// the incoming metadata and peer) and full method ("/pkg.Service/Method");
// ok false leaves the descriptor out.
type KeyFunc func(ctx context.Context, fullMethod string) (value string, ok bool)

// Key names one descriptor entry and the function that reads its value.
type Key struct {
	Name  string
	Value KeyFunc
}

// By returns the Key named name read by f.
func By(name string, f KeyFunc) Key { return Key{Name: name, Value: f} }

// Method returns the call's full method, "/pkg.Service/Method".
func Method() KeyFunc {
	return func(_ context.Context, m string) (string, bool) { return m, m != "" }
}

// Const returns v for every call.
func Const(v string) KeyFunc {
	return func(context.Context, string) (string, bool) { return v, true }
}

// Peer returns the IP address of the call's peer (IPv4-mapped as IPv4),
// without the port. Behind proxies, use ClientIP.
func Peer() KeyFunc {
	return ClientIP(ratelimit.ClientIPOptions{})
}

// ClientIP returns the client's IP address by the rules of
// ratelimit.ClientIP: the peer's, or the one your trusted proxies
// forwarded in the metadata key o.Header (lower case; default
// x-forwarded-for, which Envoy sets).
func ClientIP(o ratelimit.ClientIPOptions) KeyFunc {
	key := strings.ToLower(o.Header)
	if key == "" {
		key = "x-forwarded-for"
	}
	proxied := len(o.TrustedProxies) > 0 || o.TrustedHops > 0
	return func(ctx context.Context, _ string) (string, bool) {
		p, ok := peer.FromContext(ctx)
		if !ok || p.Addr == nil {
			return "", false
		}
		var fwd []string
		if proxied {
			fwd = metadata.ValueFromIncomingContext(ctx, key)
		}
		return o.Resolve(p.Addr.String(), fwd)
	}
}

// Metadata returns the first value of the incoming metadata key name, when
// not empty. Clients send any metadata: see ratelimit.Header.
func Metadata(name string) KeyFunc {
	return func(ctx context.Context, _ string) (string, bool) {
		vs := metadata.ValueFromIncomingContext(ctx, name)
		if len(vs) == 0 || vs[0] == "" {
			return "", false
		}
		return vs[0], true
	}
}

// APIKey returns the API key in the incoming metadata key name; for
// "authorization", the token after "Bearer ". As with ratelimit.APIKey,
// the limiter replaces it on arrival by the listed key's id or a sha256:
// hash: the key itself is never counted, labelled or logged.
func APIKey(name string) KeyFunc {
	md := Metadata(name)
	return func(ctx context.Context, m string) (string, bool) {
		v, ok := md(ctx, m)
		if !ok {
			return "", false
		}
		if name == "authorization" {
			if len(v) <= 7 || (v[:7] != "Bearer " && v[:7] != "bearer ") {
				return "", false
			}
			v = v[7:]
		}
		return v, true
	}
}

// User returns the authenticated user that f finds in the call's context,
// as set by your authentication interceptor (chained before this one).
func User(f func(ctx context.Context) (user string, ok bool)) KeyFunc {
	return func(ctx context.Context, _ string) (string, bool) {
		u, ok := f(ctx)
		return u, ok && u != ""
	}
}

// Options configures an Interceptor. Zero values are the documented
// defaults.
type Options struct {
	// Domain is the rule domain to decide in. Required.
	Domain string
	// Descriptors, one []Key each, are sent for every call (a descriptor
	// with a key that has no value is left out).
	Descriptors [][]Key
	// HideAllowedTrailers leaves the x-ratelimit-* trailers out of allowed
	// calls (default: every decided call carries them).
	HideAllowedTrailers bool
}

// Validate reports invalid options, each error a *field.Error.
func (o *Options) Validate() error {
	var errs []error
	if o.Domain == "" {
		errs = append(errs, field.Errorf("Domain", "required"))
	}
	for i, d := range o.Descriptors {
		p := fmt.Sprintf("Descriptors[%d]", i)
		if len(d) == 0 {
			errs = append(errs, field.Errorf(p, "a descriptor needs at least one key"))
		}
		for j, k := range d {
			if k.Name == "" || k.Value == nil {
				errs = append(errs, field.Errorf(fmt.Sprintf("%s[%d]", p, j), "a key needs a Name and a Value"))
			}
		}
	}
	return errors.Join(errs...)
}

// Interceptor limits the calls of a gRPC server. It is safe for concurrent
// use.
type Interceptor struct {
	d ratelimit.Decider
	o Options
}

// New returns an Interceptor asking d.
func New(d ratelimit.Decider, o Options) (*Interceptor, error) {
	if d == nil {
		return nil, errors.New("grpclimit: interceptor without decider")
	}
	if err := o.Validate(); err != nil {
		return nil, fmt.Errorf("grpclimit: %w", err)
	}
	return &Interceptor{d: d, o: o}, nil
}

// Unary returns the unary server interceptor.
func (i *Interceptor) Unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		ctx, md, err := i.decide(ctx, info.FullMethod)
		if md != nil {
			_ = grpc.SetTrailer(ctx, md)
		}
		if err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

// Stream returns the stream server interceptor; it decides once, when the
// stream starts.
func (i *Interceptor) Stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		ctx, md, err := i.decide(ss.Context(), info.FullMethod)
		if md != nil {
			ss.SetTrailer(md)
		}
		if err != nil {
			return err
		}
		return handler(srv, &stream{ServerStream: ss, ctx: ctx})
	}
}

// stream is a ServerStream whose context carries the decision.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// decide decides one call. It returns the context carrying the decision,
// the trailers to set (nil for none) and the call's error: Unavailable when
// no decision could be made, ResourceExhausted with RetryInfo when refused.
func (i *Interceptor) decide(ctx context.Context, method string) (context.Context, metadata.MD, error) {
	ds := i.descriptors(ctx, method)
	if len(ds) == 0 {
		return ctx, nil, nil
	}
	d, err := i.d.Decide(ctx, i.o.Domain, ds)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return ctx, nil, status.FromContextError(cerr).Err()
		}
		return ctx, nil, status.Error(codes.Unavailable, "rate limit unavailable")
	}
	if prev, ok := ratelimit.FromContext(ctx); ok {
		d = ratelimit.Merge(prev, d)
	}
	ctx = ratelimit.NewContext(ctx, d)
	if d.Allowed {
		if i.o.HideAllowedTrailers {
			return ctx, nil, nil
		}
		return ctx, trailers(&d), nil
	}
	return ctx, trailers(&d), refusal(&d)
}

// descriptors reads every descriptor of the options from a call.
func (i *Interceptor) descriptors(ctx context.Context, method string) []ratelimit.Descriptor {
	ds := make([]ratelimit.Descriptor, 0, len(i.o.Descriptors))
next:
	for _, spec := range i.o.Descriptors {
		d := make(ratelimit.Descriptor, 0, len(spec))
		for _, k := range spec {
			v, ok := k.Value(ctx, method)
			if !ok {
				continue next
			}
			d = append(d, ratelimit.Entry{Key: k.Name, Value: v})
		}
		ds = append(ds, d)
	}
	return ds
}

// trailers returns the rate-limit trailers of d: limit, remaining and reset
// (seconds, rounded up) of the limiting status, and retry-after (seconds,
// rounded up, at least 1) when refused.
func trailers(d *ratelimit.Decision) metadata.MD {
	md := metadata.MD{}
	if s, ok := d.Limiting(); ok {
		md.Set(LimitKey, strconv.FormatInt(s.Limit, 10))
		md.Set(RemainingKey, strconv.FormatInt(max(0, s.Remaining), 10))
		md.Set(ResetKey, strconv.FormatInt(ceilSeconds(s.Reset.Nanoseconds()), 10))
	}
	if !d.Allowed {
		md.Set(RetryAfterKey, strconv.FormatInt(max(1, ceilSeconds(d.RetryAfter.Nanoseconds())), 10))
	}
	if len(md) == 0 {
		return nil
	}
	return md
}

// refusal is the error of a refused call.
func refusal(d *ratelimit.Decision) error {
	msg := "rate limit exceeded"
	if s, ok := d.Limiting(); ok && s.Rule != "" {
		msg += ": " + s.Rule
	}
	st := status.New(codes.ResourceExhausted, msg)
	wait := max(d.RetryAfter, 0)
	if ds, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(wait)}); err == nil {
		st = ds
	}
	return st.Err()
}

func ceilSeconds(ns int64) int64 {
	const sec = int64(1e9)
	if ns <= 0 {
		return 0
	}
	return (ns + sec - 1) / sec
}
