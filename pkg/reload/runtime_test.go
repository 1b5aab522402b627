package reload

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/config"
)

// runtimeTree writes dir/ratelimit/config/edge.yaml admitting n a second
// for key k of domain edge.
func runtimeTree(t *testing.T, dir string, n int) {
	t.Helper()
	writeFile(t, filepath.Join(dir, "ratelimit", "config", "edge.yaml"), ruleFile("edge", n))
}

// swapLink points link at target atomically (a new symlink renamed over
// the old), as a deployment swaps its runtime root.
func swapLink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

// TestRuntimeWatchRoot: with watch: root only a swap of the root reloads
// (edits below it do not, as in envoyproxy/ratelimit), and a Watcher with
// no server file path (the configuration comes from the environment)
// watches the runtime section alone.
func TestRuntimeWatchRoot(t *testing.T) {
	dir := t.TempDir()
	runtimeTree(t, filepath.Join(dir, "v1"), 1)
	runtimeTree(t, filepath.Join(dir, "v2"), 2)
	root := filepath.Join(dir, "current")
	swapLink(t, filepath.Join(dir, "v1"), root)
	doc := "runtime: {root: " + root + ", subdirectory: ratelimit}\n"
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, doc)
	h := start(t, path, func(o *Options) {
		o.Path = ""
		o.Load = func() (*config.Config, error) { return config.Load(strings.NewReader(doc), "environment") }
	})
	if got := limit(h.w.opts.Current, "edge"); got != 1 {
		t.Fatalf("initial limit %d, want 1", got)
	}
	// An edit below the root is not a reload trigger.
	runtimeTree(t, filepath.Join(dir, "v1"), 3)
	h.none(t)
	swapLink(t, filepath.Join(dir, "v2"), root)
	if got := limit(h.next(t), "edge"); got != 2 {
		t.Errorf("after the swap: limit %d, want 2", got)
	}
	// An unrelated file next to the root does not reload either.
	writeFile(t, filepath.Join(dir, "other"), "x")
	h.none(t)
}

// TestRuntimeWatchAppDirectory: with watch: app_directory any change in
// the app directory reloads, whatever the file's name.
func TestRuntimeWatchAppDirectory(t *testing.T) {
	dir := t.TempDir()
	runtimeTree(t, dir, 1)
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, "runtime: {root: "+dir+", subdirectory: ratelimit, watch: app_directory}\n")
	h := start(t, path, nil)
	runtimeTree(t, dir, 2)
	if got := limit(h.next(t), "edge"); got != 2 {
		t.Errorf("after the edit: limit %d, want 2", got)
	}
	writeFile(t, filepath.Join(dir, "ratelimit", "config", "other.conf"), ruleFile("other", 4))
	cfg := h.next(t)
	if got := limit(cfg, "other"); got != 4 {
		t.Errorf("new file other.conf: limit %d, want 4 (every file of the app directory is a rule file)", got)
	}
	if err := os.Remove(filepath.Join(dir, "ratelimit", "config", "other.conf")); err != nil {
		t.Fatal(err)
	}
	if got := limit(h.next(t), "other"); got != -1 {
		t.Errorf("after removing other.conf: limit %d, want no rule", got)
	}
}
