// Package browsertest starts Debian's chromium, headless, for tests that
// drive a real browser with chromedp, and keeps their screenshots.
//
// Without a browser a test is skipped, with a message saying how to install
// one, except in CI (CI=true), where a missing browser fails the test:
// .ci/run installs chromium.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// candidates are the browser executables looked for, in order.
var candidates = []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome"}

// Path returns the browser executable, or "" when none is installed.
func Path() string {
	for _, c := range candidates {
		if p, err := exec.LookPath(c); err == nil {
			return p
		}
	}
	return ""
}

// Options tune New.
type Options struct {
	// Dark asks pages for the dark colour scheme (prefers-color-scheme).
	Dark bool
	// Width and Height are the window's size (default 1440x900, a laptop
	// screen).
	Width, Height int64
	// Timeout bounds everything the test does with the browser (default
	// 60s).
	Timeout time.Duration
}

// New starts a headless browser and returns a chromedp context for one tab
// of it; it is closed when the test ends.
func New(t testing.TB, o Options) context.Context {
	t.Helper()
	path := Path()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("browsertest: no chromium found: CI must install it (apt-get install chromium, see .ci/run)")
		}
		t.Skip("browsertest: no chromium found; install it (apt-get install chromium) to run this browser test")
	}
	if o.Width == 0 {
		o.Width, o.Height = 1440, 900
	}
	if o.Timeout == 0 {
		o.Timeout = 60 * time.Second
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(int(o.Width), int(o.Height)),
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	t.Cleanup(cancel)
	actx, acancel := chromedp.NewExecAllocator(ctx, opts...)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(bcancel)
	scheme := "light"
	if o.Dark {
		scheme = "dark"
	}
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(o.Width, o.Height)); err != nil {
		t.Fatalf("browsertest: start %s: %v", path, err)
	}
	media := emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}}
	if _, err := chromedp.Call(bctx, emulation.SetEmulatedMedia, media); err != nil {
		t.Fatalf("browsertest: emulate %s colour scheme: %v", scheme, err)
	}
	return bctx
}

// ArtifactDir is where a test keeps its screenshots: a directory named
// after the test under $TEST_ARTIFACTS when that is set, else the test's
// testing.T.ArtifactDir (kept with go test -artifacts).
func ArtifactDir(t *testing.T) string {
	t.Helper()
	root := os.Getenv("TEST_ARTIFACTS")
	if root == "" {
		return t.ArtifactDir()
	}
	dir := filepath.Join(root, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Screenshot saves the whole page as NAME.png in ArtifactDir and returns
// the file's path.
func Screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(ArtifactDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// SetHeaders sends headers with every request of the tab from now on (e.g.
// Authorization).
func SetHeaders(t testing.TB, ctx context.Context, headers map[string]string) {
	t.Helper()
	h := network.Headers{}
	for k, v := range headers {
		h[k] = v
	}
	if _, err := chromedp.Call(ctx, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: h}); err != nil {
		t.Fatalf("browsertest: set headers: %v", err)
	}
}
