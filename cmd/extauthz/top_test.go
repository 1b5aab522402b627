package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/internal/golden"
	"github.com/extauthz/extauthz/internal/insightfake"
	"github.com/extauthz/extauthz/pkg/adminauth"
	"github.com/extauthz/extauthz/pkg/server"
)

const topToken = "top-test-token-0123456789"

// topServer is an admin handler serving data behind the bearer token
// topToken; it returns its address and the token's file.
func topServer(t *testing.T, d insightfake.Data) (addr, tokenFile string) {
	t.Helper()
	tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(topToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := adminauth.New(adminauth.Settings{Auth: adminauth.Auth{TokenFile: tokenFile}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(server.NewAdmin(server.AdminOptions{
		Gatherer: prometheus.NewRegistry(), Ready: func(context.Context) error { return nil },
		Config: func() []byte { return nil }, Access: a, API: insightfake.Handler(d),
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), tokenFile
}

var topNow = time.Date(2026, 12, 6, 13, 0, 0, 0, time.UTC)

func runTop(t *testing.T, ctx context.Context, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	err := run(ctx, append([]string{"top"}, args...), func(string) string { return "" }, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// TestTopOnce: one frame of the sample fleet, every window; a value made
// of HTML and an escape sequence prints as inert text.
func TestTopOnce(t *testing.T) {
	addr, tokenFile := topServer(t, insightfake.Sample(topNow))
	for _, window := range []string{"5m", "7d"} {
		t.Run(window, func(t *testing.T) {
			out, stderr, err := runTop(t, context.Background(), "--addr", addr, "--token-file", tokenFile, "--once", "--window", window)
			if err != nil {
				t.Fatalf("top: %v\n%s", err, stderr)
			}
			if strings.ContainsRune(out, '\x1b') {
				t.Errorf("--once output holds an escape character:\n%q", out)
			}
			out = strings.ReplaceAll(out, addr, "ADDR")
			golden.Check(t, filepath.Join("testdata", "top_once_"+window+".golden"), out)
		})
	}
}

func TestTopEmpty(t *testing.T) {
	addr, tokenFile := topServer(t, insightfake.Data{Scope: "replica", Replicas: 1, GeneratedAt: topNow,
		Warning: "redis unreachable: answering for this replica\x1b[2J"})
	out, stderr, err := runTop(t, context.Background(), "--addr", "http://"+addr, "--token-file", tokenFile, "--once")
	if err != nil {
		t.Fatalf("top: %v\n%s", err, stderr)
	}
	out = strings.ReplaceAll(out, addr, "ADDR")
	golden.Check(t, filepath.Join("testdata", "top_empty.golden"), out)
}

func TestTopErrors(t *testing.T) {
	addr, tokenFile := topServer(t, insightfake.Sample(topNow))
	noAPI := httptest.NewServer(server.NewAdmin(server.AdminOptions{
		Gatherer: prometheus.NewRegistry(), Ready: func(context.Context) error { return nil }, Config: func() []byte { return nil },
	}))
	defer noAPI.Close()
	wrong := filepath.Join(t.TempDir(), "wrong")
	if err := os.WriteFile(wrong, []byte("not-the-token-at-all"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		want     string
	}{
		{"no token", []string{"--addr", addr, "--once"}, 1, "401 unauthorized: pass the admin token with --token-file"},
		{"wrong token", []string{"--addr", addr, "--token-file", wrong, "--once"}, 1, "401 unauthorized"},
		{"insight off", []string{"--addr", noAPI.URL, "--once"}, 1, "404 not found: traffic insight is off on this server"},
		{"bad window", []string{"--addr", addr, "--token-file", tokenFile, "--window", "2h", "--once"}, 2, `--window "2h": expected 5m, 1h, 24h or 7d`},
		{"bad limit", []string{"--addr", addr, "--limit", "0", "--once"}, 2, "--limit 0: expected 1 to 100"},
		{"bad addr", []string{"--addr", "ftp://x:1", "--once"}, 2, `--addr "ftp://x:1"`},
		{"cert without key", []string{"--addr", addr, "--cert-file", "c.pem", "--once"}, 2, "--cert-file and --key-file go together"},
		{"missing token file", []string{"--addr", addr, "--token-file", filepath.Join(t.TempDir(), "none"), "--once"}, 2, "--token-file: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := runTop(t, context.Background(), tc.args...)
			var msg bytes.Buffer
			code := exitCode(err, &msg)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d (err %v)", code, tc.wantCode, err)
			}
			if all := stderr + msg.String(); !strings.Contains(all, tc.want) {
				t.Errorf("stderr %q, want it to contain %q", all, tc.want)
			}
			if strings.Contains(out+stderr+msg.String(), "not-the-token") {
				t.Error("the token was printed")
			}
		})
	}
}

// TestTopRefreshes: without --once, frames are redrawn in place (cursor
// home, erase below) until the context ends, which exits cleanly.
func TestTopRefreshes(t *testing.T) {
	addr, tokenFile := topServer(t, insightfake.Sample(topNow))
	ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
	defer cancel()
	out, stderr, err := runTop(t, ctx, "--addr", addr, "--token-file", tokenFile, "--interval", "200ms")
	if err != nil {
		t.Fatalf("top: %v\n%s", err, stderr)
	}
	frames := strings.Count(out, "\x1b[H")
	if frames < 2 {
		t.Errorf("%d frames drawn in 700ms at 200ms, want at least 2", frames)
	}
	if !strings.HasSuffix(out, "\x1b[J") || strings.Count(out, "\x1b[J") != frames {
		t.Errorf("each frame should end by erasing below it: %q", out[max(0, len(out)-80):])
	}
	if strings.Count(out, "203.0.113.7") < frames {
		t.Errorf("not every frame lists the top offender")
	}
}
