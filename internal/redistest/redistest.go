// Package redistest starts throwaway redis-server processes for tests: a
// standalone server, a three-master Redis Cluster or a Sentinel-monitored
// master/replica pair, each on free loopback ports and stopped at cleanup.
//
// When redis-server (or redis-cli, for a cluster) is not installed the
// helpers skip the test with a message, except when the environment variable
// CI is "true", where they fail it: CI must exercise the Redis code.
package redistest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// startTimeout bounds how long a server may take to answer PING after it is
// started; cluster and sentinel setups get a few of these.
const startTimeout = 15 * time.Second

// Binary returns the path of the named executable ("redis-server",
// "redis-cli"). When it is missing it skips t, or fails t when CI=true.
func Binary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := fmt.Sprintf("redistest: %s not found in PATH (install Debian package redis-server/redis-tools): %v", name, err)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Options configures a standalone server. Zero values are the defaults.
type Options struct {
	// Config holds extra redis.conf lines, e.g. "requirepass s3cret" or
	// "replicaof 127.0.0.1 6379".
	Config []string
}

// Server is one redis-server process listening on 127.0.0.1.
type Server struct {
	// Addr is "127.0.0.1:port".
	Addr string
	// Port is the TCP port of Addr.
	Port int
	// Dir is the server's working directory (config, logs, cluster state).
	Dir string

	bin  string
	conf string // path of redis.conf
	args []string
	tls  *tls.Config // client side, for TLS servers

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// Start starts a standalone redis-server on a free loopback port and stops
// it when t ends. It skips or fails t (see Binary) when redis-server is
// missing.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin := Binary(t, "redis-server")
	return startServer(t, bin, "redis", nil, func(int) []string { return opts.Config })
}

// startServer writes a config (with the port placeholder filled in) and
// starts the server, retrying on another port if the chosen one was taken
// between probing and binding.
func startServer(t testing.TB, bin, name string, extraArgs []string, lines func(port int) []string) *Server {
	t.Helper()
	return startServerWith(t, bin, name, extraArgs, lines, nil)
}

// startServerWith is startServer for a server that speaks TLS (tlsConf is
// the client side, used to check it is up) when tlsConf is not nil.
func startServerWith(t testing.TB, bin, name string, extraArgs []string, lines func(port int) []string, tlsConf *tls.Config) *Server {
	t.Helper()
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := FreePort()
		if err != nil {
			t.Fatalf("redistest: %v", err)
		}
		s := &Server{
			Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			Port: port,
			Dir:  dir,
			bin:  bin,
			conf: filepath.Join(dir, name+".conf"),
			args: extraArgs,
			tls:  tlsConf,
		}
		conf := []string{
			"port " + strconv.Itoa(port),
			"bind 127.0.0.1",
			"protected-mode no",
			"daemonize no",
			"dir " + dir,
			"logfile " + filepath.Join(dir, name+".log"),
			"loglevel notice",
		}
		if name != "sentinel" {
			conf = append(conf, `save ""`, "appendonly no")
		}
		conf = append(conf, lines(port)...)
		if err := os.WriteFile(s.conf, []byte(strings.Join(conf, "\n")+"\n"), 0o600); err != nil {
			t.Fatalf("redistest: write config: %v", err)
		}
		if err := s.launch(); err != nil {
			lastErr = err
			continue
		}
		t.Cleanup(s.stop)
		return s
	}
	t.Fatalf("redistest: start %s: %v", name, lastErr)
	return nil
}

// launch execs the server and waits until it answers PING.
func (s *Server) launch() error {
	logPath := filepath.Join(s.Dir, "stdout.log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open %s: %w", logPath, err)
	}
	defer out.Close()
	cmd := exec.Command(s.bin, append([]string{s.conf}, s.args...)...)
	cmd.Dir = s.Dir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec %s: %w", s.bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			return fmt.Errorf("%s exited at startup: %s", s.Addr, s.logTail())
		default:
		}
		if err := ping(s.Addr, s.tls); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			s.kill()
			return fmt.Errorf("%s did not answer PING within %v: %v; log: %s", s.Addr, startTimeout, err, s.logTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends an inline PING over a fresh connection, without authentication
// (a server with requirepass answers -NOAUTH, which also proves it is up).
func ping(addr string, tlsConf *tls.Config) error {
	d := &net.Dialer{Timeout: 200 * time.Millisecond}
	var c net.Conn
	var err error
	if tlsConf != nil {
		c, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "+PONG") || strings.HasPrefix(line, "-NOAUTH") {
		return nil
	}
	return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
}

// logTail returns the end of the server's log files, for error messages.
func (s *Server) logTail() string {
	var b bytes.Buffer
	for _, n := range []string{"stdout.log", "redis.log", "sentinel.log", "node.log"} {
		data, err := os.ReadFile(filepath.Join(s.Dir, n))
		if err != nil || len(data) == 0 {
			continue
		}
		if len(data) > 2000 {
			data = data[len(data)-2000:]
		}
		fmt.Fprintf(&b, "[%s] %s", n, data)
	}
	return b.String()
}

// URL returns "redis://127.0.0.1:port/0".
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Client returns a go-redis client for s, closed when t ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(s.options())
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) options() *redis.Options {
	var tc *tls.Config
	if s.tls != nil {
		tc = s.tls.Clone()
	}
	return &redis.Options{Addr: s.Addr, DisableIdentity: true, MaxRetries: -1, TLSConfig: tc}
}

// Kill sends SIGKILL to the server and waits for it to exit. It is a no-op
// when the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.killLocked()
}

func (s *Server) killLocked() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill() // SIGKILL also ends a SIGSTOPped process
	<-s.exited
	s.cmd = nil
}

// stop is the cleanup: kill and wait.
func (s *Server) stop() { s.Kill() }

// Restart starts the server again on the same port and directory (after
// Kill, or killing it first). It fails t if the port cannot be bound again.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = s.launch(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond) // the port may linger briefly
	}
	t.Fatalf("redistest: restart %s: %v", s.Addr, err)
}

// Pause stops the process with SIGSTOP: connections stay open but nothing
// answers, the nastiest kind of outage. Resume or cleanup undoes it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused process with SIGCONT.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return fmt.Errorf("redistest: %s is not running", s.Addr)
	}
	if err := s.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("redistest: signal %v to %s: %w", sig, s.Addr, err)
	}
	return nil
}

// CommandStats returns the number of calls per command (lower case, e.g.
// "evalsha") from INFO commandstats.
func (s *Server) CommandStats(ctx context.Context) (map[string]int64, error) {
	c := redis.NewClient(s.options())
	defer c.Close()
	info, err := c.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redistest: INFO commandstats on %s: %w", s.Addr, err)
	}
	return ParseCommandStats(info)
}

// ParseCommandStats parses the text of INFO commandstats into calls per
// command, e.g. "cmdstat_evalsha:calls=3,usec=..." gives {"evalsha": 3}.
func ParseCommandStats(info string) (map[string]int64, error) {
	stats := make(map[string]int64)
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		name, rest, ok := strings.Cut(line, ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		for _, kv := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			if k != "calls" {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("redistest: bad commandstats line %q: %w", line, err)
			}
			stats[strings.TrimPrefix(name, "cmdstat_")] = n
		}
	}
	return stats, nil
}

func itoa(n int) string { return strconv.Itoa(n) }

// FreePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func FreePort() (int, error) {
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
