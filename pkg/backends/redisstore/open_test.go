package redisstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// notPEM is a file that exists and holds no PEM block.
var notPEM = func() string {
	p, _ := filepath.Abs("redisstore.go")
	return p
}()

func TestOpenValidates(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "nothing", cfg: Config{}, wantErr: "needs exactly one of url (standalone), sentinel or cluster"},
		{name: "two modes", cfg: Config{URL: URL("redis://h:1"), Cluster: &Cluster{Addrs: []string{"h:2"}}}, wantErr: "needs exactly one of url (standalone), sentinel or cluster; 2 are set"},
		{name: "bad scheme", cfg: Config{URL: URL("http://h:1")}, wantErr: `url: scheme "http": expected redis://, rediss:// (TLS) or unix://`},
		{name: "socket with a host", cfg: Config{URL: URL("unix://h/tmp/r.sock")}, wantErr: "expected unix:///absolute/path"},
		{name: "socket without a path", cfg: Config{URL: URL("unix://")}, wantErr: "expected unix:///absolute/path"},
		{name: "socket query", cfg: Config{URL: URL("unix:///tmp/r.sock?db=0&dial_timeout=1s")}, wantErr: `query parameter "dial_timeout" is not accepted`},
		{name: "socket bad db", cfg: Config{URL: URL("unix:///tmp/r.sock?db=x")}, wantErr: `db "x" is not a database number`},
		{name: "socket with tls", cfg: Config{URL: URL("unix:///tmp/r.sock"), TLS: TLS{ClientSettings: certs.ClientSettings{Enabled: true}}}, wantErr: "tls: not available over a unix socket"},
		{name: "bad url keeps the password out", cfg: Config{URL: URL("redis://u:hunter2@h:port")}, wantErr: "url: not a URL"},
		{name: "query", cfg: Config{URL: URL("redis://h:1/0?dial_timeout=1s")}, wantErr: "query parameters are not accepted"},
		{name: "sentinel without addrs", cfg: Config{Sentinel: &Sentinel{MasterName: "m"}}, wantErr: "sentinel.addrs: missing"},
		{name: "sentinel without name", cfg: Config{Sentinel: &Sentinel{Addrs: []string{"h:1"}}}, wantErr: "sentinel.master_name: missing"},
		{name: "bad cluster addr", cfg: Config{Cluster: &Cluster{Addrs: []string{"nohost"}}}, wantErr: `cluster.addrs[0]: "nohost" is not an address`},
		{name: "negative timeout", cfg: Config{URL: URL("redis://h:1"), Timeouts: Timeouts{Read: -time.Second}}, wantErr: "timeouts.read: -1s is negative"},
		{name: "missing password file", cfg: Config{URL: URL("redis://h:1"), PasswordFile: "/nonexistent/pw"}, wantErr: "password_file: open /nonexistent/pw"},
		{name: "cert without key", cfg: Config{URL: URL("redis://h:1"), TLS: TLS{ClientSettings: certs.ClientSettings{CertFile: "c.pem"}}}, wantErr: "tls: set both cert_file and key_file"},
		{name: "missing ca", cfg: Config{URL: URL("rediss://h:1"), TLS: TLS{ClientSettings: certs.ClientSettings{CAFile: "/nonexistent/ca.pem"}}}, wantErr: "tls.ca_file: certs: stat /nonexistent/ca.pem: no such file"},
		// Issue 16, finding 6: Validate (so validate) refuses what Open refused, or go-redis panicked on.
		{name: "pool beyond int32", cfg: Config{URL: URL("redis://h:1"), Pool: Pool{Size: 1 << 31}}, wantErr: "pool.size: 2147483648 is too large: expected at most 2147483647"},
		{name: "min idle beyond int32", cfg: Config{URL: URL("redis://h:1"), Pool: Pool{MinIdle: 1 << 31}}, wantErr: "pool.min_idle: 2147483648 is too large"},
		{name: "password file is a directory", cfg: Config{URL: URL("redis://h:1"), PasswordFile: os.TempDir()}, wantErr: "password_file: read " + os.TempDir() + ": is a directory"},
		{name: "ca file without a certificate", cfg: Config{URL: URL("rediss://h:1"), TLS: TLS{ClientSettings: certs.ClientSettings{CAFile: notPEM}}}, wantErr: "tls.ca_file: certs: " + notPEM + ": no PEM certificate found"},
		{name: "client certificate not PEM", cfg: Config{URL: URL("rediss://h:1"), TLS: TLS{ClientSettings: certs.ClientSettings{CertFile: notPEM, KeyFile: notPEM}}}, wantErr: "tls: certs: cert_file " + notPEM + " and key_file " + notPEM + " are not a certificate and its key: tls: failed to find any PEM data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.cfg, Options{})
			if err == nil {
				s.Close()
				t.Fatalf("Open: got nil error, want %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Open: got %v, want %q", err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("Open error leaks the password: %v", err)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{in: "redis://h:6379/0", want: "redis://h:6379/0"},
		{in: "redis://u:p@h:6379/0", want: "redis://u:xxxxx@h:6379/0"},
		{in: "rediss://:p@h", want: "rediss://:xxxxx@h"},
		{in: "redis://u@h", want: "redis://u@h"},
		{in: "redis://u:p:q@h/x@y", want: "redis://u:xxxxx@h/x@y"},
		{in: "garbage", want: "<unparsable url>"},
	}
	for _, tc := range tests {
		if got := RedactURL(tc.in); got != tc.want {
			t.Errorf("RedactURL(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func takeOne(ctx context.Context, s *Store) error {
	return s.Take(ctx, limiter.CountAll, []limiter.Request{{Key: "auth", Limit: limiter.Limit{Requests: 100, Period: time.Hour}, Hits: 1}}, make([]limiter.Result, 1))
}

// TestOpenUnixSocket: a unix:///path URL (envoyproxy/ratelimit's default
// REDIS_SOCKET_TYPE) counts on the server behind the socket, in the
// database ?db= names, with the password of the URL.
func TestOpenUnixSocket(t *testing.T) {
	dir, err := os.MkdirTemp("", "rs") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	sock := filepath.Join(dir, "redis.sock")
	srv := redistest.Start(t, redistest.Options{Config: []string{"unixsocket " + sock, "unixsocketperm 700", "requirepass sock-pw"}})
	s, err := Open(Config{URL: URL("unix://:sock-pw@" + sock + "?db=3")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	if err := takeOne(ctx, s); err != nil {
		t.Fatalf("Take over the socket: %v", err)
	}
	tcp := redis.NewClient(&redis.Options{Addr: srv.Addr, Password: "sock-pw", DB: 3})
	defer tcp.Close()
	keys, err := tcp.Keys(ctx, "*").Result()
	if err != nil || len(keys) == 0 {
		t.Fatalf("database 3 over TCP: keys %v, %v; want the counter taken over the socket", keys, err)
	}
	if strings.Contains(s.String(), "sock-pw") {
		t.Errorf("String() shows the password: %s", s)
	}
}

// TestOpenAuth covers the credential sources: URL, fields, ACL user, and a
// password file that is re-read for new connections.
func TestOpenAuth(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{Config: []string{
		"requirepass default-pw",
		"user app on >app-pw ~* +@all",
	}})
	ctx := context.Background()
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte("app-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "password in url", cfg: Config{URL: URL("redis://:default-pw@" + srv.Addr + "/0")}},
		{name: "user and password in url", cfg: Config{URL: URL("redis://app:app-pw@" + srv.Addr + "/0")}},
		{name: "fields override the url", cfg: Config{URL: URL("redis://app:wrong@" + srv.Addr), Password: "app-pw"}},
		{name: "password file", cfg: Config{URL: URL("redis://" + srv.Addr), Username: "app", PasswordFile: pwFile}},
		{name: "wrong password", cfg: Config{URL: URL("redis://:nope@" + srv.Addr)}, wantErr: true},
		{name: "no password", cfg: Config{URL: URL("redis://" + srv.Addr)}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = takeOne(ctx, s)
			if (err != nil) != tc.wantErr {
				t.Errorf("Take: got error %v, want error: %v", err, tc.wantErr)
			}
			if strings.Contains(s.String(), "pw") {
				t.Errorf("String() shows credentials: %q", s.String())
			}
		})
	}

	t.Run("password file rotation", func(t *testing.T) {
		s, err := Open(Config{URL: URL("redis://" + srv.Addr), Username: "app", PasswordFile: pwFile, Pool: Pool{Size: 1}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := takeOne(ctx, s); err != nil {
			t.Fatalf("before rotation: %v", err)
		}
		admin := srv.Client(t)
		if err := admin.Do(ctx, "AUTH", "default-pw").Err(); err != nil {
			t.Fatal(err)
		}
		if err := admin.Do(ctx, "ACL", "SETUSER", "app", "resetpass", ">rotated-pw").Err(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(pwFile, []byte("rotated-pw"), 0o600); err != nil {
			t.Fatal(err)
		}
		// Existing connections stay authenticated; new ones read the file.
		if err := admin.Do(ctx, "CLIENT", "KILL", "USER", "app").Err(); err != nil {
			t.Fatal(err)
		}
		var lastErr error
		for range 5 {
			if lastErr = takeOne(ctx, s); lastErr == nil {
				break
			}
		}
		if lastErr != nil {
			t.Errorf("after rotation: %v", lastErr)
		}
	})
}

// TestOpenTLS connects with mutual TLS.
func TestOpenTLS(t *testing.T) {
	srv, files := redistest.StartTLS(t)
	ctx := context.Background()
	good := TLS{ClientSettings: certs.ClientSettings{CAFile: files.CAFile, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: files.ServerName}}
	tests := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{name: "rediss url with client cert", cfg: Config{URL: URL("rediss://" + srv.Addr + "/0"), TLS: good}},
		{name: "server name defaults to the host (127.0.0.1 is in the certificate)", cfg: Config{URL: URL("rediss://" + srv.Addr), TLS: TLS{ClientSettings: certs.ClientSettings{CAFile: files.CAFile, CertFile: files.ClientCert, KeyFile: files.ClientKey}}}},
		{name: "enabled on a redis url", cfg: Config{URL: URL("redis://" + srv.Addr), TLS: TLS{ClientSettings: certs.ClientSettings{Enabled: true, CAFile: files.CAFile, CertFile: files.ClientCert, KeyFile: files.ClientKey}}}},
		{name: "no client certificate", cfg: Config{URL: URL("rediss://" + srv.Addr), TLS: TLS{ClientSettings: certs.ClientSettings{CAFile: files.CAFile}}}, wantErr: true},
		{name: "untrusted server", cfg: Config{URL: URL("rediss://" + srv.Addr), TLS: TLS{ClientSettings: certs.ClientSettings{CertFile: files.ClientCert, KeyFile: files.ClientKey}}}, wantErr: true},
		{name: "untrusted server, verification off", cfg: Config{URL: URL("rediss://" + srv.Addr), TLS: TLS{ClientSettings: certs.ClientSettings{CertFile: files.ClientCert, KeyFile: files.ClientKey}, InsecureSkipVerify: true}}},
		{name: "wrong server name", cfg: Config{URL: URL("rediss://" + srv.Addr), TLS: TLS{ClientSettings: certs.ClientSettings{CAFile: files.CAFile, CertFile: files.ClientCert, KeyFile: files.ClientKey, ServerName: "other.test"}}}, wantErr: true},
		{name: "plain text", cfg: Config{URL: URL("redis://" + srv.Addr)}, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(tc.cfg, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			err = takeOne(ctx, s)
			if (err != nil) != tc.wantErr {
				t.Errorf("Take: got error %v, want error: %v", err, tc.wantErr)
			}
		})
	}
}

// TestSentinelFailover keeps serving across a forced failover: calls fail
// for at most a short while, and counts written before the failover (and
// replicated) carry over.
func TestSentinelFailover(t *testing.T) {
	for _, ap := range []bool{false, true} {
		t.Run(fmt.Sprintf("auto_pipeline=%v", ap), func(t *testing.T) { testSentinelFailover(t, ap) })
	}
}

func testSentinelFailover(t *testing.T, autoPipeline bool) {
	sen := redistest.StartSentinel(t)
	var reloads atomic.Int64
	s, err := Open(Config{Sentinel: &Sentinel{MasterName: redistest.MasterName, Addrs: sen.Addrs()}, AutoPipeline: new(autoPipeline)}, Options{
		OnScriptLoad: func() { reloads.Add(1) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if !strings.HasPrefix(s.String(), "redis sentinel mymaster@") {
		t.Errorf("String: got %q", s.String())
	}
	ctx := context.Background()
	l := limiter.Limit{Requests: 100, Period: time.Hour}
	req := limiter.Request{Key: "failover", Limit: l, Hits: 1}
	for i := range 10 {
		if r := take(t, s, limiter.CountAll, req)[0]; r.Remaining != int64(99-i) {
			t.Fatalf("before failover, hit %d: got %+v, want %d remaining", i+1, r, 99-i)
		}
	}
	// Let the replica catch up, so the counts survive the failover.
	old, err := sen.Master(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Client(t).Do(ctx, "WAIT", 1, 2000).Err(); err != nil {
		t.Fatal(err)
	}
	newMaster := sen.Failover(t)
	if newMaster == old {
		t.Fatal("failover kept the old master")
	}
	// Make the new master one that never saw the script, as a failover to a
	// replica started after the last script load would be.
	if err := newMaster.Client(t).ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	reloadsBefore := reloads.Load()
	// go-redis learns of the switch from the sentinel asynchronously: until
	// then calls may still reach the old master (and be lost when it turns
	// replica, as with any asynchronous Redis replication). Call until our
	// writes land on the new master.
	nm := newMaster.Client(t)
	k := Key("", "failover")
	atFailover, err := nm.Get(ctx, k).Result()
	if err != nil {
		t.Fatalf("replicated key on the new master: %v", err)
	}
	deadline := time.Now().Add(15 * time.Second)
	var res [1]limiter.Result
	var failures, calls int
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.Take(cctx, limiter.CountAll, []limiter.Request{req}, res[:])
		cancel()
		calls++
		if err != nil {
			failures++
		} else if v, _ := nm.Get(ctx, k).Result(); v != atFailover {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no call reached the new master within 15s of the failover (%d calls, %d failed), last error: %v", calls, failures, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := reloads.Load() - reloadsBefore; got != 1 {
		t.Errorf("script reloads after the failover: got %d, want 1", got)
	}
	prev := res[0].Remaining
	for i := range 5 {
		r := take(t, s, limiter.CountAll, req)[0]
		if r.Remaining != prev-1 {
			t.Errorf("after failover, hit %d: got %+v, want %d remaining", i+1, r, prev-1)
		}
		prev = r.Remaining
	}
	if prev > 100-16 {
		t.Errorf("remaining after 16+ hits: got %d, want the counts from before the failover kept", prev)
	}
	t.Logf("calls until the new master served: %d (%d failed)", calls, failures)
}
