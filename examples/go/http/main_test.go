package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/rlsclient/rlstest"
	"github.com/extauthz/extauthz/pkg/server"
)

// start runs the example with args until the test ends and returns its
// base URL, read from its "listening on" line.
func start(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"--listen", "127.0.0.1:0"}, args...), pw, io.Discard)
		pw.Close()
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("no listening line: %v", err)
	}
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q, want listening on ADDR", line)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	return "http://" + addr
}

func do(t *testing.T, method, url string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestExample(t *testing.T) {
	for name, args := range map[string][]string{
		"in process": {"--config", "config.yaml"},
		"remote":     {"--remote", rlstest.Start(t, "config.yaml", server.Settings{Headers: server.HeaderSettings{Enabled: true}}).Addr},
	} {
		t.Run(name, func(t *testing.T) {
			base := start(t, args...)
			resp, body := do(t, "GET", base+"/hello")
			if resp.StatusCode != http.StatusOK || body != "hello: rule per-ip, 99 of 100 left\n" {
				t.Fatalf("hello: %d %q", resp.StatusCode, body)
			}
			if resp.Header.Get("X-RateLimit-Limit") != "100" || resp.Header.Get("X-RateLimit-Remaining") != "99" {
				t.Errorf("hello headers %v", resp.Header)
			}
			for i := range 5 {
				resp, body = do(t, "POST", base+"/login")
				if want := "logged in: rule login, " + strconv.Itoa(4-i) + " of 5 left\n"; resp.StatusCode != http.StatusOK || body != want {
					t.Fatalf("login %d: %d %q, want %q", i, resp.StatusCode, body, want)
				}
			}
			resp, body = do(t, "POST", base+"/login")
			if resp.StatusCode != http.StatusTooManyRequests || body != "rate limit exceeded\n" {
				t.Fatalf("6th login: %d %q, want 429", resp.StatusCode, body)
			}
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			if err != nil || ra < 1 || ra > 60 {
				t.Errorf("Retry-After %q, want 1..60 seconds", resp.Header.Get("Retry-After"))
			}
			if resp.Header.Get("X-RateLimit-Limit") != "5" || resp.Header.Get("X-RateLimit-Remaining") != "0" {
				t.Errorf("429 headers %v", resp.Header)
			}
			// The global limit counted every request (1 + 6 of 100).
			resp, body = do(t, "GET", base+"/hello")
			if resp.StatusCode != http.StatusOK || body != "hello: rule per-ip, 92 of 100 left\n" {
				t.Errorf("hello after logins: %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestExampleFlags(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := run(ctx, []string{"--listen", "127.0.0.1:0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--config or --remote") {
		t.Errorf("no config: %v", err)
	}
	if err := run(ctx, []string{"--config", "missing.yaml"}, io.Discard, io.Discard); err == nil {
		t.Error("missing config: no error")
	}
}
