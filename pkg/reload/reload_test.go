package reload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/descriptor"
)

// wait bounds how long a test waits for a callback; quiet is how long it
// waits to be sure none comes.
const (
	wait     = 10 * time.Second
	quiet    = 400 * time.Millisecond
	debounce = 50 * time.Millisecond
)

// serverFile is a server file with one rule admitting n requests a minute
// for key k of domain edge (plus extra YAML).
func serverFile(n int, extra string) string {
	return fmt.Sprintf("domains:\n  - domain: edge\n    descriptors:\n      - key: k\n        rate_limit: {unit: minute, requests_per_unit: %d}\n%s", n, extra)
}

// ruleFile is a rule file of domain d with one rule admitting n a minute.
func ruleFile(d string, n int) string {
	return fmt.Sprintf("domain: %s\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, requests_per_unit: %d}\n", d, n)
}

// limit returns the requests_per_unit of domain's rule for key k, or -1.
func limit(cfg *config.Config, domain string) int64 {
	r, ok := cfg.Rules.Match(domain, descriptor.Descriptor{{Key: "k", Value: "v"}})
	if !ok {
		return -1
	}
	return r.Limit.Requests
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

type reloaded struct {
	cfg  *config.Config
	hash string
}

// harness runs a Watcher over the server file at path and records its
// callbacks.
type harness struct {
	w         *Watcher
	reloads   chan reloaded
	errs      chan error
	unchanged chan string
	done      chan error // Run's result
	cancel    context.CancelFunc
}

func start(t *testing.T, path string, tweak func(*Options)) *harness {
	t.Helper()
	cur, err := config.LoadFile(path)
	if err != nil {
		t.Fatalf("initial load: %v", err)
	}
	h := &harness{
		reloads:   make(chan reloaded, 32),
		errs:      make(chan error, 32),
		unchanged: make(chan string, 32),
		done:      make(chan error, 1),
	}
	opts := Options{
		Path:        path,
		Load:        func() (*config.Config, error) { return config.LoadFile(path) },
		Current:     cur,
		OnReload:    func(cfg *config.Config, hash string) { h.reloads <- reloaded{cfg, hash} },
		OnError:     func(err error) { h.errs <- err },
		OnUnchanged: func(hash string) { h.unchanged <- hash },
		Debounce:    debounce,
	}
	if tweak != nil {
		tweak(&opts)
	}
	h.w, err = New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(wait):
			t.Error("Run did not return after cancel")
		}
	})
	return h
}

// next waits for the next successful reload, failing on an error.
func (h *harness) next(t *testing.T) *config.Config {
	t.Helper()
	select {
	case r := <-h.reloads:
		if want, err := Hash(r.cfg); err != nil || r.hash != want {
			t.Errorf("OnReload hash %q, want Hash(cfg) = %q (%v)", r.hash, want, err)
		}
		return r.cfg
	case err := <-h.errs:
		t.Fatalf("got error %v, want a reload", err)
	case <-time.After(wait):
		t.Fatal("no reload")
	}
	return nil
}

// nextUnchanged waits for an OnUnchanged call.
func (h *harness) nextUnchanged(t *testing.T) string {
	t.Helper()
	select {
	case hash := <-h.unchanged:
		return hash
	case r := <-h.reloads:
		t.Fatalf("got a reload (limit %d), want unchanged", limit(r.cfg, "edge"))
	case err := <-h.errs:
		t.Fatalf("got error %v, want unchanged", err)
	case <-time.After(wait):
		t.Fatal("no OnUnchanged call")
	}
	return ""
}

// nextError waits for an OnError call.
func (h *harness) nextError(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.errs:
		return err
	case r := <-h.reloads:
		t.Fatalf("got a reload (limit %d), want an error", limit(r.cfg, "edge"))
	case <-time.After(wait):
		t.Fatal("no OnError call")
	}
	return nil
}

// none checks that no reload or error arrives for a while.
func (h *harness) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-h.reloads:
		t.Fatalf("got a reload (limit %d), want none", limit(r.cfg, "edge"))
	case err := <-h.errs:
		t.Fatalf("got error %v, want none", err)
	case <-time.After(quiet):
	}
}

func TestEditInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	h := start(t, path, nil)

	writeFile(t, path, serverFile(2, ""))
	if got := limit(h.next(t), "edge"); got != 2 {
		t.Errorf("limit after edit: got %d, want 2", got)
	}
	h.none(t)
}

func TestAtomicRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	h := start(t, path, nil)

	// As editors and config management tools do: write aside, rename over.
	tmp := filepath.Join(dir, ".extauthz.yaml.tmp")
	writeFile(t, tmp, serverFile(3, ""))
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if got := limit(h.next(t), "edge"); got != 3 {
		t.Errorf("limit after rename: got %d, want 3", got)
	}
	// The watch survives the rename: edit the new file.
	writeFile(t, path, serverFile(4, ""))
	if got := limit(h.next(t), "edge"); got != 4 {
		t.Errorf("limit after a second edit: got %d, want 4", got)
	}
}

// atomicWriter lays out files the way the kubelet updates ConfigMap and
// Secret volumes: each version in a new "..<timestamp>" directory, a
// "..data" symlink to the current one, swapped by rename, and a symlink per
// file through "..data".
type atomicWriter struct {
	dir     string
	version int
	current string
}

func (a *atomicWriter) write(t *testing.T, files map[string]string) {
	t.Helper()
	a.version++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%09d", a.version, a.version)
	for name, data := range files {
		writeFile(t, filepath.Join(a.dir, ts, name), data)
	}
	tmp := filepath.Join(a.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(a.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range files {
		link := filepath.Join(a.dir, name)
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				t.Fatal(err)
			}
		}
	}
	if a.current != "" {
		if err := os.RemoveAll(filepath.Join(a.dir, a.current)); err != nil {
			t.Fatal(err)
		}
	}
	a.current = ts
}

func TestConfigMapSwap(t *testing.T) {
	root := t.TempDir()
	cm := &atomicWriter{dir: filepath.Join(root, "config")}
	rules := &atomicWriter{dir: filepath.Join(root, "rules")}
	extra := "rules_dir: ../rules\n"
	cm.write(t, map[string]string{"extauthz.yaml": serverFile(1, extra)})
	rules.write(t, map[string]string{"api.yaml": ruleFile("api", 10)})
	path := filepath.Join(cm.dir, "extauthz.yaml")
	h := start(t, path, nil)

	cm.write(t, map[string]string{"extauthz.yaml": serverFile(2, extra)})
	cfg := h.next(t)
	if got := limit(cfg, "edge"); got != 2 {
		t.Errorf("limit after the ConfigMap update: got %d, want 2", got)
	}

	rules.write(t, map[string]string{"api.yaml": ruleFile("api", 20)})
	cfg = h.next(t)
	if got := limit(cfg, "api"); got != 20 {
		t.Errorf("rules_dir limit after its ConfigMap update: got %d, want 20", got)
	}

	// A second update of each, after the first swapped directories.
	cm.write(t, map[string]string{"extauthz.yaml": serverFile(3, extra)})
	if got := limit(h.next(t), "edge"); got != 3 {
		t.Errorf("limit after the second ConfigMap update: got %d, want 3", got)
	}
	rules.write(t, map[string]string{"api.yaml": ruleFile("api", 30), "web.yaml": ruleFile("web", 5)})
	cfg = h.next(t)
	if got, got2 := limit(cfg, "api"), limit(cfg, "web"); got != 30 || got2 != 5 {
		t.Errorf("rules_dir limits after the second update: got api %d, web %d; want 30, 5", got, got2)
	}
}

var fileLineCol = regexp.MustCompile(`extauthz\.yaml:\d+:\d+: `)

func TestBadConfigKeepsOld(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	h := start(t, path, nil)

	writeFile(t, path, serverFile(2, "near_limit_ratio: 7\n"))
	err := h.nextError(t)
	if !fileLineCol.MatchString(err.Error()) || !strings.Contains(err.Error(), "near_limit_ratio") {
		t.Errorf("error %q: want file:line:col and the offending key", err)
	}
	h.none(t)

	writeFile(t, path, "domains: [\n")
	if err := h.nextError(t); !strings.Contains(err.Error(), "extauthz.yaml:") {
		t.Errorf("syntax error %q: want the file name", err)
	}

	// Fixed: the new config is handed over.
	writeFile(t, path, serverFile(5, ""))
	if got := limit(h.next(t), "edge"); got != 5 {
		t.Errorf("limit after the fix: got %d, want 5", got)
	}
}

func TestDebounce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	var loads int
	h := start(t, path, func(o *Options) {
		o.Debounce = 300 * time.Millisecond
		load := o.Load
		o.Load = func() (*config.Config, error) { loads++; return load() }
	})
	for n := 2; n <= 10; n++ {
		writeFile(t, path, serverFile(n, ""))
	}
	if got := limit(h.next(t), "edge"); got != 10 {
		t.Errorf("limit after the burst: got %d, want 10 (the last write)", got)
	}
	h.none(t)
	h.cancel()
	<-h.done
	h.done <- nil // for the cleanup
	if loads != 1 {
		t.Errorf("loads for a burst of 9 writes: got %d, want 1", loads)
	}
}

func TestUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	h := start(t, path, nil)
	want, err := Hash(mustLoad(t, path))
	if err != nil {
		t.Fatal(err)
	}

	// Same settings, different text.
	writeFile(t, path, "# a comment\n"+serverFile(1, "count_mode: all\n"))
	if got := h.nextUnchanged(t); got != want {
		t.Errorf("unchanged hash: got %s, want %s", got, want)
	}
	h.w.Reload()
	if got := h.nextUnchanged(t); got != want {
		t.Errorf("hash after Reload(): got %s, want %s", got, want)
	}
	h.none(t)
}

func mustLoad(t *testing.T, path string) *config.Config {
	t.Helper()
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestRulesDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "extauthz.yaml")
	writeFile(t, path, serverFile(1, "rules_dir: rules\n"))
	writeFile(t, filepath.Join(dir, "rules", "api.yaml"), ruleFile("api", 1))
	h := start(t, path, nil)

	writeFile(t, filepath.Join(dir, "rules", "web.yml"), ruleFile("web", 2))
	if got := limit(h.next(t), "web"); got != 2 {
		t.Errorf("new rule file: got limit %d, want 2", got)
	}
	writeFile(t, filepath.Join(dir, "rules", "README.txt"), "not a rule file")
	writeFile(t, filepath.Join(dir, "rules", ".hidden.yaml"), "garbage: [")
	h.none(t)

	if err := os.Remove(filepath.Join(dir, "rules", "web.yml")); err != nil {
		t.Fatal(err)
	}
	if got := limit(h.next(t), "web"); got != -1 {
		t.Errorf("removed rule file: got limit %d, want no rule", got)
	}

	// Replace the whole directory.
	writeFile(t, filepath.Join(dir, "rules.new", "api.yaml"), ruleFile("api", 7))
	if err := os.Rename(filepath.Join(dir, "rules"), filepath.Join(dir, "rules.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir, "rules.new"), filepath.Join(dir, "rules")); err != nil {
		t.Fatal(err)
	}
	cfg := h.nextAfterErrors(t)
	if got := limit(cfg, "api"); got != 7 {
		t.Errorf("replaced rules dir: got limit %d, want 7", got)
	}
	// The new directory is watched.
	writeFile(t, filepath.Join(dir, "rules", "api.yaml"), ruleFile("api", 8))
	if got := limit(h.next(t), "api"); got != 8 {
		t.Errorf("edit in the replaced rules dir: got limit %d, want 8", got)
	}
}

// nextAfterErrors waits for a reload, ignoring errors on the way (a
// directory being swapped may be missing for a moment).
func (h *harness) nextAfterErrors(t *testing.T) *config.Config {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case r := <-h.reloads:
			return r.cfg
		case <-h.errs:
		case <-deadline:
			t.Fatal("no reload")
			return nil
		}
	}
}

func TestRulesDirChanged(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "extauthz.yaml")
	writeFile(t, path, serverFile(1, "rules_dir: a\n"))
	writeFile(t, filepath.Join(dir, "a", "api.yaml"), ruleFile("api", 1))
	writeFile(t, filepath.Join(dir, "b", "api.yaml"), ruleFile("api", 2))
	h := start(t, path, nil)

	writeFile(t, path, serverFile(1, "rules_dir: b\n"))
	if got := limit(h.next(t), "api"); got != 2 {
		t.Errorf("after switching rules_dir: got limit %d, want 2", got)
	}
	h.nextUnchanged(t) // the check of the new directory
	writeFile(t, filepath.Join(dir, "b", "api.yaml"), ruleFile("api", 3))
	if got := limit(h.next(t), "api"); got != 3 {
		t.Errorf("edit in the new rules_dir: got limit %d, want 3", got)
	}
	writeFile(t, filepath.Join(dir, "a", "api.yaml"), ruleFile("api", 4))
	h.none(t) // the old directory is no longer watched
}

func TestSymlinkedFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "versions", "v1.yaml")
	writeFile(t, target, serverFile(1, ""))
	path := filepath.Join(dir, "etc", "extauthz.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	h := start(t, path, nil)

	// Edit the target in place: only its own directory sees it.
	writeFile(t, target, serverFile(2, ""))
	if got := limit(h.next(t), "edge"); got != 2 {
		t.Errorf("edit of the symlink's target: got %d, want 2", got)
	}
	// Point the link elsewhere.
	v2 := filepath.Join(dir, "versions2", "v2.yaml")
	writeFile(t, v2, serverFile(3, ""))
	tmp := path + ".new"
	if err := os.Symlink(v2, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if got := limit(h.next(t), "edge"); got != 3 {
		t.Errorf("relinked: got %d, want 3", got)
	}
	writeFile(t, v2, serverFile(4, ""))
	if got := limit(h.next(t), "edge"); got != 4 {
		t.Errorf("edit of the new target: got %d, want 4", got)
	}
}

func TestApplyRejects(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	refuse := true
	h := start(t, path, func(o *Options) {
		onReload := o.OnReload
		o.OnReload = nil
		o.Apply = func(cfg *config.Config, hash string) error {
			if refuse {
				return errors.New("refused")
			}
			onReload(cfg, hash)
			return nil
		}
	})
	writeFile(t, path, serverFile(2, ""))
	if err := h.nextError(t); err.Error() != "refused" {
		t.Fatalf("got error %v, want the one Apply returned", err)
	}
	// The same files again: tried again, not taken as unchanged.
	h.w.Reload()
	if err := h.nextError(t); err.Error() != "refused" {
		t.Fatalf("second try: got error %v, want the one Apply returned", err)
	}
	refuse = false
	h.w.Reload()
	if got := limit(h.next(t), "edge"); got != 2 {
		t.Errorf("limit once accepted: got %d, want 2", got)
	}
	h.w.Reload()
	h.nextUnchanged(t)
}

func TestRunStopsOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	before := runtime.NumGoroutine()
	w, err := New(Options{Path: path, Load: func() (*config.Config, error) { return config.LoadFile(path) },
		OnReload: func(*config.Config, string) {}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after cancel")
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run: got nil, want an error")
	}
	if err := w.Close(); err != nil {
		t.Errorf("Close after Run: %v", err)
	}
	// The file watcher's goroutine is gone too.
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		t.Errorf("goroutines: got %d after Run returned, want at most %d", n, before)
	}
}

func TestNewErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	load := func() (*config.Config, error) { return config.LoadFile(path) }
	onReload := func(*config.Config, string) {}
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no load", opts: Options{Path: path, OnReload: onReload}, wantErr: "no Load function"},
		{name: "no callback", opts: Options{Path: path, Load: load}, wantErr: "no OnReload or Apply callback"},
		{name: "negative debounce", opts: Options{Path: path, Load: load, OnReload: onReload, Debounce: -1}, wantErr: "negative debounce"},
		{name: "missing directory", opts: Options{Path: "/nonexistent/dir/extauthz.yaml", Load: load, OnReload: onReload}, wantErr: "watch /nonexistent/dir"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w, err := New(tc.opts)
			if err == nil {
				_ = w.Close()
				t.Fatalf("New: got nil error, want %q", tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("New: got %q, want it to contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestHash(t *testing.T) {
	load := func(s string) *config.Config {
		t.Helper()
		cfg, err := config.Load(strings.NewReader(s), "x.yaml")
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	hash := func(cfg *config.Config) string {
		t.Helper()
		h, err := Hash(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	base := hash(load(serverFile(1, "")))
	if len(base) != 64 {
		t.Errorf("hash %q: want 64 hex digits", base)
	}
	tests := []struct {
		name     string
		yaml     string
		wantSame bool
	}{
		{name: "comments and defaults spelled out", yaml: "# hi\nnear_limit_ratio: 0.8\n" + serverFile(1, "log: {level: info}\n"), wantSame: true},
		{name: "a limit", yaml: serverFile(2, "")},
		{name: "a setting", yaml: serverFile(1, "over_limit_body: true\n")},
		{name: "a secret", yaml: serverFile(1, "backends: [{type: redis, url: 'redis://:a@127.0.0.1:6379'}]\n")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := hash(load(tc.yaml)) == base; got != tc.wantSame {
				t.Errorf("same hash as the base: got %v, want %v", got, tc.wantSame)
			}
		})
	}
	// Secrets are left out of the hash.
	a := hash(load(serverFile(1, "backends: [{type: redis, url: 'redis://:one@127.0.0.1:6379'}]\n")))
	b := hash(load(serverFile(1, "backends: [{type: redis, url: 'redis://:two@127.0.0.1:6379'}]\n")))
	if a != b {
		t.Errorf("hashes of configs differing only in a password differ: the hash must not depend on secrets")
	}
}
