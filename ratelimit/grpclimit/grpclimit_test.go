package grpclimit_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/rlsclient/rlstest"
	"github.com/extauthz/extauthz/ratelimit"
	"github.com/extauthz/extauthz/ratelimit/grpclimit"
)

type keyCase struct {
	name   string
	ctx    context.Context
	want   string
	wantOK bool
}

func runKeyCases(t *testing.T, f grpclimit.KeyFunc, cases []keyCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := f(tc.ctx, "/pkg.Svc/Do")
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("got (%q, %v), want (%q, %v)", got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func withPeer(a net.Addr) context.Context {
	return peer.NewContext(context.Background(), &peer.Peer{Addr: a})
}

func pairs(k string, vs []string) []string {
	var out []string
	for _, v := range vs {
		out = append(out, k, v)
	}
	return out
}

func withMD(kv ...string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
}

func TestKeys(t *testing.T) {
	bg := context.Background()
	runKeyCases(t, grpclimit.Method(), []keyCase{{"method", bg, "/pkg.Svc/Do", true}})
	runKeyCases(t, grpclimit.Const("x"), []keyCase{{"const", bg, "x", true}})
	runKeyCases(t, grpclimit.Peer(), []keyCase{
		{"IPv4", withPeer(&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 5}), "192.0.2.1", true},
		{"IPv6", withPeer(&net.TCPAddr{IP: net.ParseIP("2001:DB8::1"), Port: 5}), "2001:db8::1", true},
		{"mapped", withPeer(&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 5}), "192.0.2.1", true},
		{"unix", withPeer(&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}), "", false},
		{"no peer", bg, "", false},
		// Metadata that claims an address is not the peer.
		{"spoofed metadata ignored", peer.NewContext(withMD("x-forwarded-for", "1.1.1.1"), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("192.0.2.1")}}), "192.0.2.1", true},
	})
	trusted := grpclimit.ClientIP(ratelimit.ClientIPOptions{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	viaProxy := func(peerIP string, xff ...string) context.Context {
		return peer.NewContext(withMD(append([]string{}, pairs("x-forwarded-for", xff)...)...), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP(peerIP), Port: 9}})
	}
	runKeyCases(t, trusted, []keyCase{
		{"trusted proxy", viaProxy("10.0.0.1", "198.51.100.1"), "198.51.100.1", true},
		{"spoofed left-most", viaProxy("10.0.0.1", "6.6.6.6, 198.51.100.1"), "198.51.100.1", true},
		{"untrusted peer", viaProxy("203.0.113.1", "198.51.100.1"), "203.0.113.1", true},
		{"no metadata", withPeer(&net.TCPAddr{IP: net.ParseIP("10.0.0.1"), Port: 9}), "10.0.0.1", true},
		{"no peer", withMD("x-forwarded-for", "198.51.100.1"), "", false},
	})
	runKeyCases(t, grpclimit.Metadata("x-tenant"), []keyCase{
		{"set", withMD("x-tenant", "acme"), "acme", true},
		{"upper-case key sent", withMD("X-Tenant", "acme"), "acme", true},
		{"first of two", withMD("x-tenant", "a", "x-tenant", "b"), "a", true},
		{"empty", withMD("x-tenant", ""), "", false},
		{"missing", withMD("other", "x"), "", false},
		{"no metadata", bg, "", false},
	})
	const secret = "s3cr3t"
	runKeyCases(t, grpclimit.APIKey("x-api-key"), []keyCase{
		{"set", withMD("x-api-key", secret), secret, true},
		{"missing", bg, "", false},
	})
	runKeyCases(t, grpclimit.APIKey("authorization"), []keyCase{
		{"bearer", withMD("authorization", "Bearer "+secret), secret, true},
		{"basic", withMD("authorization", "Basic Zm9v"), "", false},
		{"bearer without token", withMD("authorization", "Bearer "), "", false},
	})
	type userKey struct{}
	user := grpclimit.User(func(ctx context.Context) (string, bool) {
		u, ok := ctx.Value(userKey{}).(string)
		return u, ok
	})
	runKeyCases(t, user, []keyCase{
		{"authenticated", context.WithValue(bg, userKey{}, "ann"), "ann", true},
		{"empty", context.WithValue(bg, userKey{}, ""), "", false},
		{"anonymous", bg, "", false},
	})
}

// service starts the health service on loopback limited by d, and returns
// a client and the last decision a handler saw.
func service(t *testing.T, d ratelimit.Decider) (healthpb.HealthClient, func() (ratelimit.Decision, bool)) {
	t.Helper()
	peerIP := grpclimit.By("remote_address", grpclimit.Peer())
	in, err := grpclimit.New(d, grpclimit.Options{Domain: "grpc", Descriptors: [][]grpclimit.Key{
		{peerIP},
		{grpclimit.By("method", grpclimit.Method()), peerIP},
	}})
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan ratelimit.Decision, 100)
	record := func(ctx context.Context) {
		if d, ok := ratelimit.FromContext(ctx); ok {
			seen <- d
		}
	}
	g := grpc.NewServer(
		grpc.ChainUnaryInterceptor(in.Unary(), func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			record(ctx)
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(in.Stream(), func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			record(ss.Context())
			return h(srv, ss)
		}),
	)
	healthpb.RegisterHealthServer(g, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	last := func() (ratelimit.Decision, bool) {
		select {
		case d := <-seen:
			return d, true
		default:
			return ratelimit.Decision{}, false
		}
	}
	return healthpb.NewHealthClient(conn), last
}

func checkTrailer(t *testing.T, md metadata.MD, limit, remaining string, refused bool) {
	t.Helper()
	get := func(k string) string {
		if v := md.Get(k); len(v) == 1 {
			return v[0]
		}
		return ""
	}
	if get(grpclimit.LimitKey) != limit || get(grpclimit.RemainingKey) != remaining {
		t.Errorf("trailers %v, want limit %s remaining %s", md, limit, remaining)
	}
	if n, err := strconv.Atoi(get(grpclimit.ResetKey)); err != nil || n < 1 || n > 3600 {
		t.Errorf("reset trailer %q", get(grpclimit.ResetKey))
	}
	if ra := get(grpclimit.RetryAfterKey); refused != (ra != "") {
		t.Errorf("retry-after trailer %q, refused %v", ra, refused)
	}
}

// TestInterceptors runs the interceptors against the real limiter, in
// process on the memory backend and on a real redis-server.
func TestInterceptors(t *testing.T) {
	const cfg = "testdata/config.yaml"
	rs := redistest.Start(t, redistest.Options{})
	rules, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	onRedis := filepath.Join(t.TempDir(), "redis.yaml")
	backends := fmt.Sprintf("backends: [{type: redis, url: %q}]\nbreaker: {call_timeout: 1s}\n", rs.URL())
	if err := os.WriteFile(onRedis, append([]byte(backends), rules...), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{"memory": cfg, "redis": onRedis} {
		t.Run(name, func(t *testing.T) {
			l, err := ratelimit.Open(context.Background(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			testInterceptors(t, l)
		})
	}
}

func testInterceptors(t *testing.T, l ratelimit.Decider) {
	client, last := service(t, l)
	ctx := context.Background()

	// Check: per-ip (3 a minute) and health-check (1 an hour).
	var tr metadata.MD
	if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr)); err != nil {
		t.Fatalf("first Check: %v", err)
	}
	checkTrailer(t, tr, "1", "0", false)
	d, ok := last()
	if s, _ := d.Limiting(); !ok || !d.Allowed || len(d.Statuses) != 2 || s.Rule != "health-check" {
		t.Errorf("handler saw %+v (%v), want both statuses, health-check limiting", d, ok)
	}

	tr = nil
	_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr))
	st := status.Convert(err)
	if st.Code() != codes.ResourceExhausted {
		t.Fatalf("second Check: %v, want ResourceExhausted", err)
	}
	checkTrailer(t, tr, "1", "0", true)
	var retry *errdetails.RetryInfo
	for _, det := range st.Details() {
		if r, ok := det.(*errdetails.RetryInfo); ok {
			retry = r
		}
	}
	if retry == nil || retry.RetryDelay.AsDuration() <= 0 || retry.RetryDelay.AsDuration() > time.Hour {
		t.Errorf("RetryInfo %v, want a delay in (0, 1h]", retry)
	}
	if _, ok := last(); ok {
		t.Error("the handler ran for a refused call")
	}

	// Watch (a stream): per-ip only; the third call of the minute is the
	// last allowed.
	stream, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if d, ok := last(); !ok || !d.Allowed || len(d.Statuses) != 2 || d.Statuses[1].Counted {
		t.Errorf("stream handler saw %+v (%v), want per-ip counted, method unmatched", d, ok)
	}
	stream, err = client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second Watch: %v, want ResourceExhausted", err)
	}
	checkTrailer(t, stream.Trailer(), "3", "0", true)
}

func TestInterceptorsUnavailable(t *testing.T) {
	l, err := ratelimit.Dial(context.Background(), rlstest.DownAddr(t), ratelimit.RemoteOptions{Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, _ := service(t, l)
	if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("limiter down, FailError: %v, want Unavailable", err)
	}
}

// undecided allows every call without any status.
type undecided struct{}

func (undecided) Decide(context.Context, string, []ratelimit.Descriptor) (ratelimit.Decision, error) {
	return ratelimit.Decision{Allowed: true}, nil
}

func TestInterceptorsNoLimitNoTrailers(t *testing.T) {
	client, _ := service(t, undecided{})
	var tr metadata.MD
	if _, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr)); err != nil {
		t.Fatal(err)
	}
	if len(tr.Get(grpclimit.LimitKey)) != 0 {
		t.Errorf("trailers %v without any counted limit", tr)
	}
}

func TestHideAllowedTrailers(t *testing.T) {
	d := fixedDecision{ratelimit.Decision{Allowed: true, Statuses: []ratelimit.Status{{Counted: true, Allowed: true, Limit: 9, Remaining: 8, Reset: time.Second}}}}
	for _, hide := range []bool{false, true} {
		in, err := grpclimit.New(d, grpclimit.Options{Domain: "d", HideAllowedTrailers: hide, Descriptors: [][]grpclimit.Key{{grpclimit.By("m", grpclimit.Method())}}})
		if err != nil {
			t.Fatal(err)
		}
		g := grpc.NewServer(grpc.ChainUnaryInterceptor(in.Unary()))
		healthpb.RegisterHealthServer(g, health.NewServer())
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = g.Serve(lis) }()
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		var tr metadata.MD
		_, err = healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{}, grpc.Trailer(&tr))
		_ = conn.Close()
		g.Stop()
		if err != nil {
			t.Fatal(err)
		}
		if got := len(tr.Get(grpclimit.LimitKey)) > 0; got == hide {
			t.Errorf("HideAllowedTrailers %v: trailers %v", hide, tr)
		}
	}
}

type fixedDecision struct{ d ratelimit.Decision }

func (f fixedDecision) Decide(context.Context, string, []ratelimit.Descriptor) (ratelimit.Decision, error) {
	return f.d, nil
}

func TestOptionsValidate(t *testing.T) {
	k := grpclimit.By("m", grpclimit.Method())
	for _, tc := range []struct {
		o    grpclimit.Options
		path string
	}{
		{grpclimit.Options{Descriptors: [][]grpclimit.Key{{k}}}, "Domain"},
		{grpclimit.Options{Domain: "d", Descriptors: [][]grpclimit.Key{{}}}, "Descriptors[0]"},
		{grpclimit.Options{Domain: "d", Descriptors: [][]grpclimit.Key{{k, {Name: "x"}}}}, "Descriptors[0][1]"},
	} {
		_, err := grpclimit.New(undecided{}, tc.o)
		var fe *field.Error
		if !errors.As(err, &fe) || fe.Path != tc.path {
			t.Errorf("New(%+v): %v, want a field error at %s", tc.o, err, tc.path)
		}
	}
	if _, err := grpclimit.New(nil, grpclimit.Options{Domain: "d"}); err == nil {
		t.Error("nil decider: no error")
	}
}
