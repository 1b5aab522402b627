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
// PostgreSQL refuses to run as root. When the tests run as root, initdb and
// pg_ctl run through "runuser -u postgres --" (the user the Debian package
// creates) in a temporary directory owned by that user; otherwise they run
// as the current user. pg_ctl starts the server in the background, so a
// test binary that dies before its cleanup would leave it running: every
// start first stops and removes the servers of test processes that are gone
// (each directory records its owner's process id).
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
	// Dir is the temporary directory: data/ (the cluster), the socket,
	// server.log and the owner file.
	Dir string

	bin   string
	owner *user.User // non-nil: run the binaries as this user (runuser)
	opts  Options

	mu      sync.Mutex
	running bool
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
	owner, err := serverUser()
	if err != nil {
		return nil, err
	}
	s.owner = owner
	s.reapOrphans()
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
			cleanup(s.Stop)
			return s, nil
		}
	}
	return nil, fmt.Errorf("start postgres: %w", lastErr)
}

// serverUser returns the postgres user when running as root (PostgreSQL
// refuses root), else nil: the binaries run as the current user.
func serverUser() (*user.User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL must run as another user, but user postgres is missing (install Debian package postgresql): %w", err)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		return nil, fmt.Errorf("running as root, PostgreSQL runs through runuser -u postgres, but runuser is missing (Debian package util-linux): %w", err)
	}
	return u, nil
}

// ownerFile holds the process id of the test binary that made a directory.
const ownerFile = "owner.pid"

// tempDir makes the server's directory, owned by the server's user, and
// records this process as its owner.
func (s *Server) tempDir() (string, error) {
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return "", err
	}
	if s.owner != nil {
		uid, _ := strconv.Atoi(s.owner.Uid)
		gid, _ := strconv.Atoi(s.owner.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			_ = os.RemoveAll(dir)
			return "", fmt.Errorf("chown %s to postgres: %w", dir, err)
		}
	}
	return dir, nil
}

// reapOrphans stops and removes the servers whose test binary is gone
// (killed before its cleanups ran), so that a crashed run leaves no
// postgres behind for long. Errors are ignored: this is housekeeping.
func (s *Server) reapOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), "pgtest-*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		orphan := &Server{Dir: dir, bin: s.bin, owner: s.owner, running: true}
		orphan.shutdown("immediate")
		_ = os.RemoveAll(dir)
	}
}

// processAlive reports whether process pid exists.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// DataDir is the cluster's data directory.
func (s *Server) DataDir() string { return filepath.Join(s.Dir, "data") }

func (s *Server) logPath() string { return filepath.Join(s.Dir, "server.log") }

// command runs the server binary name as the server's user: through
// "runuser -u postgres --" when root, else directly.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.owner != nil {
		cmd = exec.Command("runuser", append([]string{"-u", s.owner.Username, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.Dir
	cmd.Env = append(os.Environ(), "LC_ALL=C", "LANG=C")
	return cmd
}

func (s *Server) initdb() error {
	cmd := s.command("initdb", "-D", s.DataDir(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("initdb: %w: %s", err, tail(out))
	}
	return nil
}

// serverOptions are the postgres options pg_ctl passes on (its -o), each
// quoted for the shell pg_ctl starts postgres with.
func (s *Server) serverOptions() string {
	args := []string{
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
	for i, a := range args {
		args[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(args, " ")
}

// launch starts the server on s.Port with pg_ctl (which waits until it
// accepts connections) and checks that it answers a query.
func (s *Server) launch() error {
	cmd := s.command("pg_ctl", "start", "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)),
		"-D", s.DataDir(), "-l", s.logPath(), "-o", s.serverOptions())
	if out, err := cmd.CombinedOutput(); err != nil {
		s.mu.Lock()
		s.running = true // it may have started after pg_ctl gave up
		s.mu.Unlock()
		s.Kill()
		return fmt.Errorf("pg_ctl start on port %d: %w: %s; log: %s", s.Port, err, tail(out), s.logTail())
	}
	s.mu.Lock()
	s.running = true
	s.mu.Unlock()
	if err := s.query(); err != nil {
		s.Kill()
		return fmt.Errorf("postgres on port %d started but does not answer: %w; log: %s", s.Port, err, s.logTail())
	}
	return nil
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
// ended, everything committed is kept) and waits for it to exit. It is a
// no-op when the server is not running.
func (s *Server) Stop() { s.shutdown("fast") }

// Kill ends the server the way a crash would (immediate shutdown: no
// checkpoint; the next start runs crash recovery, keeping every committed
// transaction) and waits for it to exit.
func (s *Server) Kill() { s.shutdown("immediate") }

// shutdown runs pg_ctl stop in mode (fast or immediate) and waits up to
// stopTimeout for the server to exit.
func (s *Server) shutdown(mode string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.running {
		return
	}
	cmd := s.command("pg_ctl", "stop", "-w", "-t", strconv.Itoa(int(stopTimeout/time.Second)), "-m", mode, "-D", s.DataDir())
	if err := cmd.Run(); err != nil && mode != "immediate" {
		// Not stopped in time: end it as a crash would.
		_ = s.command("pg_ctl", "stop", "-w", "-m", "immediate", "-D", s.DataDir()).Run()
	}
	s.running = false
}

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

// Running reports whether the server is running (started and not stopped
// or killed through this Server).
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
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
