// Package e2e tests the extauthz binary as a black box: it builds the
// binary, runs it on free loopback ports with real config files, and talks
// to it over gRPC and HTTP only. The helpers here (Build, Start, Process)
// are shared by every end-to-end test.
package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Build compiles ./cmd/extauthz of this module into dir and returns the
// binary's path. Call it once, from TestMain.
func Build(dir string) (string, error) {
	return BuildCommand(dir, "./cmd/extauthz")
}

// BuildCommand compiles the main package pkg of this module (e.g.
// "./examples/go/http") into dir, named after pkg's last element, and
// returns the binary's path.
func BuildCommand(dir, pkg string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, filepath.Base(pkg))
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, out)
	}
	return bin, nil
}

// moduleRoot returns the directory of this module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(mod), nil
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

// WriteFile writes content to dir/name (creating directories) and returns
// the path.
func WriteFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// Result is the outcome of a command that ran to completion.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs the binary with args (and extra environment entries "K=V") to
// completion.
func Run(t testing.TB, bin string, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return Result{Code: ee.ExitCode(), Stdout: stdout.String(), Stderr: stderr.String()}
	case err != nil:
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return Result{Stdout: stdout.String(), Stderr: stderr.String()}
}

// Options configures Start.
type Options struct {
	// Binary is the extauthz binary (from Build).
	Binary string
	// Args follow "serve". Start adds --grpc-addr and --http-addr with free
	// ports unless AddrsFromEnv is set or Args already has them.
	Args []string
	// Env holds extra environment entries ("K=V").
	Env []string
	// AddrsFromEnv passes the listen addresses in EXTAUTHZ_GRPC_ADDR and
	// EXTAUTHZ_HTTP_ADDR instead of flags.
	AddrsFromEnv bool
	// AddrEnv, when set, passes the listen addresses only in the
	// environment entries it returns for them (e.g. envoyproxy/ratelimit's
	// GRPC_HOST/GRPC_PORT and HOST/PORT).
	AddrEnv func(grpcAddr, httpAddr string) []string
	// ReadyTimeout bounds WaitReady (default 15s).
	ReadyTimeout time.Duration
}

// Process is a running "extauthz serve".
type Process struct {
	GRPCAddr, HTTPAddr string

	cmd    *exec.Cmd
	logs   *syncBuffer
	done   chan struct{}
	err    error // of cmd.Wait, valid once done is closed
	closed sync.Once
}

// Start runs "extauthz serve" on free ports, waits until /readyz answers
// 200, and stops the process (SIGKILL if need be) when the test ends. It
// retries with other ports if the chosen ones were taken meanwhile.
func Start(t testing.TB, o Options) *Process {
	t.Helper()
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 15 * time.Second
	}
	var last error
	for range 3 {
		p, err := start(t, o)
		if err == nil {
			return p
		}
		last = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("start extauthz: %v", last)
	return nil
}

func start(t testing.TB, o Options) (*Process, error) {
	p := &Process{GRPCAddr: FreeAddr(t), HTTPAddr: FreeAddr(t), logs: &syncBuffer{}, done: make(chan struct{})}
	args := append([]string{"serve"}, o.Args...)
	env := append(os.Environ(), o.Env...)
	switch {
	case o.AddrEnv != nil:
		env = append(env, o.AddrEnv(p.GRPCAddr, p.HTTPAddr)...)
	case o.AddrsFromEnv:
		env = append(env, "EXTAUTHZ_GRPC_ADDR="+p.GRPCAddr, "EXTAUTHZ_HTTP_ADDR="+p.HTTPAddr)
	default:
		args = append(args, "--grpc-addr", p.GRPCAddr, "--http-addr", p.HTTPAddr)
	}
	p.cmd = exec.Command(o.Binary, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("extauthz logs:\n%s", p.Logs())
		}
	})
	if err := p.waitReady(o.ReadyTimeout); err != nil {
		p.Kill()
		return nil, fmt.Errorf("%w\nlogs:\n%s", err, p.Logs())
	}
	return p, nil
}

// waitReady polls /readyz until it answers 200.
func (p *Process) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("extauthz exited before it was ready: %v", p.err)
		default:
		}
		resp, err := client.Get("http://" + p.HTTPAddr + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v (last: %v)", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Logs returns what the process wrote to stdout and stderr so far.
func (p *Process) Logs() string { return p.logs.String() }

// Signal sends sig to the process.
func (p *Process) Signal(t testing.TB, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to exit and returns its exit
// code (-1 when killed by a signal).
func (p *Process) Wait(t testing.TB, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("extauthz did not exit within %v; logs:\n%s", timeout, p.Logs())
	}
	var ee *exec.ExitError
	switch {
	case p.err == nil:
		return 0
	case errors.As(p.err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return 0
}

// Kill stops the process with SIGKILL unless it has exited, and waits.
func (p *Process) Kill() {
	p.closed.Do(func() {
		if !p.Exited() {
			_ = p.cmd.Process.Kill()
		}
		<-p.done
	})
}

// Dial returns a gRPC client connection to the process, closed when the
// test ends.
func (p *Process) Dial(t testing.TB) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", p.GRPCAddr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// Get fetches path from the HTTP admin server and returns the status code
// and body.
func (p *Process) Get(t testing.TB, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + p.HTTPAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
