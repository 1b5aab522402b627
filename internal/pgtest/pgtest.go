// Package pgtest starts throwaway PostgreSQL servers for tests: initdb in a
// temporary directory, then the postgres server on a free loopback port with
// its socket in that directory, stopped and removed at cleanup. Start gives
// a test its own server (to stop, kill or restart); Shared gives every test
// of a binary one server, stopped by Main from TestMain.
//
// The server binaries are taken from the highest-versioned
// /usr/lib/postgresql/*/bin (the Debian layout), else from PATH. When they are
// missing the helpers skip the test with a message, except when the
// environment variable CI is "true", where they fail it: CI must exercise the
// PostgreSQL code.
//
// PostgreSQL refuses to run as root. When the tests run as root the server
// and initdb run as the "postgres" user (which the Debian package creates),
// the temporary directory being owned by that user; otherwise they run as the
// current user.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// startTimeout bounds how long a server may take to accept connections.
const startTimeout = 30 * time.Second

// stopTimeout bounds a fast shutdown before the server is killed.
const stopTimeout = 15 * time.Second

// BinDir returns the directory holding initdb and postgres: the highest
// version under /usr/lib/postgresql, else the directory of initdb in PATH.
// When neither exists it skips t, or fails t when CI=true.
func BinDir(t testing.TB) string {
	t.Helper()
	if d := latestBinDir("/usr/lib/postgresql"); d != "" {
		return d
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p)
	}
	msg := "pgtest: PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin or PATH (install Debian package postgresql)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// latestBinDir returns root/V/bin for the highest numeric version V whose
// bin holds both initdb and postgres, or "".
func latestBinDir(root string) string {
	entries, err := os.ReadDir(root)
	if err != nil {
		return ""
	}
	type cand struct {
		major, minor int
		dir          string
	}
	var cs []cand
	for _, e := range entries {
		maj, min, ok := parseVersion(e.Name())
		dir := filepath.Join(root, e.Name(), "bin")
		if !ok || !isExec(filepath.Join(dir, "initdb")) || !isExec(filepath.Join(dir, "postgres")) {
			continue
		}
		cs = append(cs, cand{maj, min, dir})
	}
	if len(cs) == 0 {
		return ""
	}
	sort.Slice(cs, func(i, j int) bool {
		if cs[i].major != cs[j].major {
			return cs[i].major > cs[j].major
		}
		return cs[i].minor > cs[j].minor
	})
	return cs[0].dir
}

// parseVersion parses "15" or "9.6".
func parseVersion(s string) (major, minor int, ok bool) {
	a, b, dot := strings.Cut(s, ".")
	major, err := strconv.Atoi(a)
	if err != nil {
		return 0, 0, false
	}
	if dot {
		if minor, err = strconv.Atoi(b); err != nil {
			return 0, 0, false
		}
	}
	return major, minor, true
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Options configures a server. Zero values are the defaults.
type Options struct {
	// Settings are extra server settings passed as -c name=value, e.g.
	// "max_connections=200". They come after the defaults (fsync off and a
	// small shared_buffers, for speed), so they override them.
	Settings []string
}

// Server is one PostgreSQL server listening on 127.0.0.1, with the
// superuser "postgres" and trust authentication.
type Server struct {
	// Port is the TCP port on 127.0.0.1.
	Port int
	// Dir is the temporary directory: data/ (the cluster), the socket and
	// server.log.
	Dir string

	bin  string
	cred *syscall.Credential // nil: run as the current user
	opts Options

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Start runs initdb and starts a server on a free loopback port; it is
// stopped and its directory removed when t ends. It skips or fails t (see
// BinDir) when PostgreSQL is not installed.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s, err := start(BinDir(t), opts, t.Cleanup)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s
}

// Shared servers, for tests that neither stop nor restart their server.
var (
	sharedMu       sync.Mutex
	sharedServer   *Server
	sharedErr      error
	sharedCleanups []func()
)

// Shared returns a server shared by every test of the binary that calls
// it, started by the first call (which may skip or fail t as Start does).
// Such tests use their own database or schema, and never stop or restart
// the server (use Start for that). The package's TestMain must call Main,
// which stops it.
func Shared(t testing.TB) *Server {
	t.Helper()
	bin := BinDir(t)
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if sharedServer == nil && sharedErr == nil {
		sharedServer, sharedErr = start(bin, Options{}, func(f func()) { sharedCleanups = append(sharedCleanups, f) })
	}
	if sharedErr != nil {
		t.Fatalf("pgtest: shared server: %v", sharedErr)
	}
	return sharedServer
}

// Main runs m and then stops the shared server, if one was started, and
// removes its directory. Use it as func TestMain(m *testing.M) {
// os.Exit(pgtest.Main(m)) }.
func Main(m *testing.M) int {
	code := m.Run()
	sharedMu.Lock()
	defer sharedMu.Unlock()
	for i := len(sharedCleanups) - 1; i >= 0; i-- {
		sharedCleanups[i]()
	}
	sharedCleanups, sharedServer = nil, nil
	return code
}

// start makes the directory, runs initdb and starts the server, registering
// its cleanups (run last first) with cleanup.
func start(bin string, opts Options, cleanup func(func())) (*Server, error) {
	s := &Server{bin: bin, opts: opts}
	cred, err := serverCredential()
	if err != nil {
		return nil, err
	}
	s.cred = cred
	if s.Dir, err = s.tempDir(); err != nil {
		return nil, err
	}
	cleanup(func() { _ = os.RemoveAll(s.Dir) })
	if err := s.initdb(); err != nil {
		return nil, err
	}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.Port = port
		if lastErr = s.launch(); lastErr == nil {
			cleanup(s.stop)
			return s, nil
		}
	}
	return nil, fmt.Errorf("start postgres: %w", lastErr)
}

// serverCredential returns the postgres user's credential when running as
// root, nil otherwise.
func serverCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as another user, but user postgres is missing: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// tempDir makes the server's directory under the system temporary
// directory. As root it is handed to the postgres user (which is why it is
// not under t.TempDir, whose parents are private to root).
func (s *Server) tempDir() (string, error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return "", err
	}
	if s.cred != nil {
		if err := os.Chown(dir, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("chown %s to postgres: %w", dir, err)
		}
	}
	return dir, nil
}

// DataDir is the cluster's data directory.
func (s *Server) DataDir() string { return filepath.Join(s.Dir, "data") }

func (s *Server) logPath() string { return filepath.Join(s.Dir, "server.log") }

// command returns a command for the named server binary, run as the
// server's user.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	cmd.SysProcAttr = sysProcAttr(s.cred)
	return cmd
}

func (s *Server) initdb() error {
	cmd := s.command("initdb", "-D", s.DataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, tail(out))
	}
	return nil
}

// launch starts the server on s.Port and waits until it accepts a query.
func (s *Server) launch() error {
	out, err := os.OpenFile(s.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o666)
	if err != nil {
		return fmt.Errorf("open %s: %w", s.logPath(), err)
	}
	defer out.Close()
	args := []string{
		"-D", s.DataDir(),
		"-p", strconv.Itoa(s.Port),
		"-k", s.Dir,
		"-c", "listen_addresses=127.0.0.1",
		"-c", "fsync=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB",
		"-c", "max_connections=200",
	}
	for _, kv := range s.opts.Settings {
		args = append(args, "-c", kv)
	}
	cmd := s.command("postgres", args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec postgres: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	return s.waitReady(exited)
}

// waitReady polls until a query succeeds, the server exits or startTimeout.
func (s *Server) waitReady(exited <-chan struct{}) error {
	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			s.mu.Lock()
			s.cmd = nil
			s.mu.Unlock()
			return fmt.Errorf("postgres on port %d exited at startup: %s", s.Port, s.logTail())
		default:
		}
		err := s.query()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Kill()
			return fmt.Errorf("postgres on port %d not ready within %v: %v; log: %s", s.Port, startTimeout, err, s.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) query() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	var one int
	return c.QueryRow(ctx, "SELECT 1").Scan(&one)
}

// DSN returns the URL of database db as the superuser, over TCP without
// TLS: postgres://postgres@127.0.0.1:PORT/db?sslmode=disable.
func (s *Server) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@%s/%s?sslmode=disable", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), db)
}

// CreateDatabase creates database name and returns its DSN. Tests that want
// their own tables use one database each (or one schema each).
func (s *Server) CreateDatabase(t testing.TB, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.DSN("postgres"))
	if err != nil {
		t.Fatalf("pgtest: connect: %v", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return s.DSN(name)
}

// Stop shuts the server down cleanly (fast shutdown: open sessions are
// ended, everything committed is kept) and waits for it to exit; after
// stopTimeout it is killed. It is a no-op when the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signalAndWait(syscall.SIGINT, stopTimeout)
}

// Kill ends the server the way a crash would (immediate shutdown: SIGQUIT,
// no checkpoint; the next start runs crash recovery, keeping every
// committed transaction) and waits for it to exit.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.signalAndWait(syscall.SIGQUIT, stopTimeout)
}

// signalAndWait sends sig and waits up to d, then SIGKILLs. s.mu is held.
func (s *Server) signalAndWait(sig syscall.Signal, d time.Duration) {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(d):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// stop is the cleanup.
func (s *Server) stop() { s.Stop() }

// Restart stops the server (if running) and starts it again on the same
// port and data directory. It fails t if the server does not come back.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	t.Fatalf("pgtest: restart postgres on port %d: %v", s.Port, err)
}

// Running reports whether the server process is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

// logTail returns the end of the server log, for error messages.
func (s *Server) logTail() string {
	data, err := os.ReadFile(s.logPath())
	if err != nil {
		return err.Error()
	}
	return tail(data)
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, errors.New("find a free port: listener address is not TCP")
	}
	return addr.Port, nil
}
