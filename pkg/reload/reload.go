// Package reload watches the server file and its rules directory, and
// loads the configuration again when they change or when a signal such as
// SIGHUP arrives, handing each new configuration to a callback.
//
// It watches directories, not files, so that it sees every way a file is
// replaced: an edit in place, an editor's atomic rename, and a Kubernetes
// ConfigMap or Secret volume update, where the kubelet writes a new
// timestamped directory and swaps the "..data" symlink that the visible
// files point through. (A ConfigMap mounted with subPath is never updated
// by the kubelet; mount the whole volume.) Bursts of events are debounced
// into one load. A configuration that loads to the same effective settings
// (same Hash) as the one in service is not handed over again.
//
// A reload either hands over a complete, validated *config.Config or
// reports an error: the caller keeps serving the old configuration until it
// swaps the new one in (atomically, so that in-flight requests finish on the
// rules they started with). Some settings only take effect on restart; see
// RestartRequired.
package reload

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/extauthz/extauthz/pkg/config"
)

// Defaults of Options.
const (
	DefaultDebounce = 250 * time.Millisecond
	// maxWaitFactor bounds how long a steady stream of events can delay a
	// load: at most maxWaitFactor debounce intervals.
	maxWaitFactor = 8
)

// Options configure a Watcher. Path, Load and OnReload are required; other
// zero values are the defaults given per field.
type Options struct {
	// Path is the server file. Its directory is watched, and so is the
	// directory of the file it points to when it is a symlink. Empty when
	// the configuration comes from elsewhere (the environment): then only
	// the rule directories and the signals trigger a load.
	Path string
	// Load loads the configuration from Path, typically config.LoadFile
	// plus the command line's overrides (listen addresses), so that a reload
	// sees the same effective settings as the start did.
	Load func() (*config.Config, error)
	// Current is the configuration in service, if any: its rules_dir is
	// watched from the start, and a load with its Hash is not handed over.
	Current *config.Config

	// OnReload receives each successfully loaded configuration whose Hash
	// differs from the one in service (Current's, then the last one handed
	// over), with that hash. The caller swaps it in and applies what can
	// change live (see RestartRequired). Required, unless Apply is set.
	OnReload func(cfg *config.Config, hash string)
	// Apply, when set, is called instead of OnReload, for a caller that may
	// still refuse the configuration: an error is passed to OnError and the
	// configuration is not taken as in service, so loading the same files
	// again (another change, a signal) tries it again rather than finding
	// it unchanged.
	Apply func(cfg *config.Config, hash string) error
	// OnError receives the error of a failed load (a config error lists
	// every problem as "file:line:col: path: message") or of the file
	// watcher; the configuration in service stays. Optional.
	OnError func(err error)
	// OnUnchanged is told when a load succeeded but changed nothing (for
	// example a file was touched, or a signal asked for a reload). Optional.
	OnUnchanged func(hash string)

	// Debounce is how long the files must stay quiet after a change before
	// they are loaded (default 250ms); a steady stream of changes is loaded
	// at least every 8 intervals.
	Debounce time.Duration
	// Signals, e.g. syscall.SIGHUP, trigger a reload at once. The Watcher
	// subscribes to them from New until Run returns or Close.
	Signals []os.Signal
}

// Watcher reloads the configuration when its files change. Build it with
// New, then call Run (or Close, if Run is never called). Load is required,
// and OnReload or Apply.
type Watcher struct {
	opts   Options
	path   string // absolute server file path
	fsw    *fsnotify.Watcher
	sig    chan os.Signal
	kick   chan struct{}
	closed sync.Once
	ran    atomic.Bool

	// Run's state.
	hash     string
	rulesDir string // absolute rules_dir of the last loaded config
	// runtimeDir and runtimeName are the runtime section's watch
	// (config.Config.RuntimeWatch), absolute.
	runtimeDir, runtimeName string
	watch                   watchSet
}

// New validates opts, starts watching the server file's directory (and
// Current's rules_dir) and subscribes to opts.Signals. Events are acted on
// only while Run runs.
func New(opts Options) (*Watcher, error) {
	switch {
	case opts.Load == nil:
		return nil, errors.New("reload: no Load function")
	case opts.OnReload == nil && opts.Apply == nil:
		return nil, errors.New("reload: no OnReload or Apply callback")
	case opts.Debounce < 0:
		return nil, fmt.Errorf("reload: negative debounce %v", opts.Debounce)
	}
	if opts.Debounce == 0 {
		opts.Debounce = DefaultDebounce
	}
	path := absOrEmpty(opts.Path)
	w := &Watcher{opts: opts, path: path, kick: make(chan struct{}, 1)}
	var err error
	if c := opts.Current; c != nil {
		if w.hash, err = Hash(c); err != nil {
			return nil, err
		}
		w.rulesDir = absOrEmpty(c.RulesDirPath)
		w.runtimeDir, w.runtimeName = runtimeWatch(c)
	}
	if w.fsw, err = fsnotify.NewWatcher(); err != nil {
		return nil, fmt.Errorf("reload: start file watcher: %w", err)
	}
	if err := w.rearm(); err != nil {
		_ = w.fsw.Close()
		return nil, err
	}
	if len(opts.Signals) > 0 {
		w.sig = make(chan os.Signal, 1)
		signal.Notify(w.sig, opts.Signals...)
	}
	return w, nil
}

// Hash returns the hex SHA-256 of cfg's effective configuration
// (config.Redacted): equal hashes mean equal settings and rules, however the
// files are laid out, commented or formatted. Secret values are not part of
// it, on purpose: a hash exported as a metric must not let anyone test
// password guesses against it. (A changed secret still shows in
// RestartRequired, which compares the values.)
func Hash(cfg *config.Config) (string, error) {
	b, err := cfg.Redacted()
	if err != nil {
		return "", fmt.Errorf("reload: hash: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Reload asks Run to load the configuration now, as a signal does. It
// does not block.
func (w *Watcher) Reload() {
	select {
	case w.kick <- struct{}{}:
	default: // one is pending already
	}
}

// Close stops watching and unsubscribes from the signals. Run calls it
// when it returns; call it yourself only if Run never runs. It is
// idempotent.
func (w *Watcher) Close() error {
	var err error
	w.closed.Do(func() {
		if w.sig != nil {
			signal.Stop(w.sig)
		}
		err = w.fsw.Close()
	})
	return err
}

// Run handles events until ctx is done, then closes w and returns nil.
// Callbacks run on Run's goroutine, one at a time. Run may be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.ran.CompareAndSwap(false, true) {
		return errors.New("reload: Run called twice")
	}
	defer w.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var first time.Time // first event of the pending burst; zero: none
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return errors.New("reload: file watcher closed")
			}
			if !w.relevant(ev) {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			delay := w.opts.Debounce
			if deadline := first.Add(maxWaitFactor * w.opts.Debounce); now.Add(delay).After(deadline) {
				delay = max(deadline.Sub(now), 0)
			}
			timer.Reset(delay)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return errors.New("reload: file watcher closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost: load to be sure.
				first = time.Time{}
				timer.Stop()
				w.load()
				continue
			}
			w.fail(fmt.Errorf("reload: watching %s: %w", w.path, err))
		case <-w.sig:
			first = time.Time{}
			timer.Stop()
			w.load()
		case <-w.kick:
			first = time.Time{}
			timer.Stop()
			w.load()
		case <-timer.C:
			first = time.Time{}
			w.load()
		}
	}
}

// load loads the configuration and hands it over.
func (w *Watcher) load() {
	// Watch first, then load: a change made after the new watches are in
	// place sends an event, and one made before is in what is loaded.
	if err := w.rearm(); err != nil {
		w.fail(err)
	}
	cfg, err := w.opts.Load()
	if err == nil && cfg == nil {
		err = errors.New("reload: Load returned no configuration")
	}
	if err != nil {
		w.fail(err)
		return
	}
	hash, err := Hash(cfg)
	if err != nil {
		w.fail(err)
		return
	}
	dir := absOrEmpty(cfg.RulesDirPath)
	rtDir, rtName := runtimeWatch(cfg)
	if dir != w.rulesDir || rtDir != w.runtimeDir || rtName != w.runtimeName {
		w.rulesDir, w.runtimeDir, w.runtimeName = dir, rtDir, rtName
		if err := w.rearm(); err != nil {
			w.fail(err)
		}
		// The new directories may have changed before their watch started.
		w.Reload()
	}
	if hash == w.hash {
		if w.opts.OnUnchanged != nil {
			w.opts.OnUnchanged(hash)
		}
		return
	}
	if w.opts.Apply != nil {
		if err := w.opts.Apply(cfg, hash); err != nil {
			w.fail(err)
			return
		}
	} else {
		w.opts.OnReload(cfg, hash)
	}
	w.hash = hash
}

func (w *Watcher) fail(err error) {
	if w.opts.OnError != nil {
		w.opts.OnError(err)
	}
}

// watchSet is what the Watcher watches, and which events matter.
type watchSet struct {
	dirs     map[string]bool // directories watched
	paths    map[string]bool // the server file and rules_dir, as given and resolved
	ruleDirs map[string]bool // directories whose *.yaml and *.yml files matter
	// anyIn are directories where every event matters (runtime watch:
	// app_directory); names are paths whose own events matter (the
	// runtime root of watch: root).
	anyIn map[string]bool
	names map[string]bool
}

// runtimeWatch returns cfg's runtime watch (config.Config.RuntimeWatch)
// made absolute.
func runtimeWatch(cfg *config.Config) (dir, name string) {
	dir, name = cfg.RuntimeWatch()
	return absOrEmpty(dir), absOrEmpty(name)
}

// wanted computes the watch set of the server file and rules_dir.
func (w *Watcher) wanted() watchSet {
	ws := watchSet{dirs: map[string]bool{}, paths: map[string]bool{}, ruleDirs: map[string]bool{}, anyIn: map[string]bool{}, names: map[string]bool{}}
	if w.path != "" {
		for _, p := range withResolved(w.path) {
			ws.paths[p] = true
			ws.dirs[filepath.Dir(p)] = true
		}
	}
	if w.runtimeDir != "" {
		// As envoyproxy/ratelimit: watch: root sees only the root itself
		// replaced in its parent directory (not edits below it); watch:
		// app_directory sees every change in the app directory.
		ws.dirs[w.runtimeDir] = true
		if w.runtimeName != "" {
			ws.names[w.runtimeName] = true
		} else {
			ws.anyIn[w.runtimeDir] = true
		}
	}
	if w.rulesDir != "" {
		for _, p := range withResolved(w.rulesDir) {
			ws.paths[p] = true
			ws.dirs[filepath.Dir(p)] = true // sees the directory replaced
			ws.dirs[p] = true
			ws.ruleDirs[p] = true
		}
	}
	return ws
}

// withResolved returns p and, when it differs, p with symlinks resolved.
func withResolved(p string) []string {
	out := []string{p}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		if r, err = filepath.Abs(r); err == nil && r != p {
			out = append(out, r)
		}
	}
	return out
}

func absOrEmpty(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// rearm makes the watched directories those of wanted(): it adds the ones
// that exist (again: a directory that was replaced is a new inode, and
// adding a watched one is harmless) and removes the others. Only failing to
// watch the server file's own directory is an error; the others may not
// exist yet.
func (w *Watcher) rearm() error {
	ws := w.wanted()
	for _, d := range w.fsw.WatchList() {
		if !ws.dirs[d] {
			_ = w.fsw.Remove(d)
		}
	}
	var err error
	for d := range ws.dirs {
		if e := w.fsw.Add(d); e != nil && w.path != "" && d == filepath.Dir(w.path) {
			err = fmt.Errorf("reload: watch %s: %w", d, e)
		}
	}
	w.watch = ws
	return err
}

// relevant reports whether ev may change the configuration.
func (w *Watcher) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false // attribute changes only (or, on Linux, part of a remove that is reported too)
	}
	name := filepath.Clean(ev.Name)
	base := filepath.Base(name)
	switch {
	case w.watch.names[name], w.watch.anyIn[filepath.Dir(name)]:
		return true
	}
	if !w.inFileWatch(name) {
		return false
	}
	switch {
	case strings.HasPrefix(base, ".."):
		// The kubelet's atomic writer: "..data", "..data_tmp" and the
		// "..<timestamp>" directories.
		return true
	case w.watch.paths[name], w.watch.dirs[name]:
		return true
	case w.watch.ruleDirs[filepath.Dir(name)]:
		ext := filepath.Ext(base)
		return !strings.HasPrefix(base, ".") && (ext == ".yaml" || ext == ".yml")
	}
	return false
}

// inFileWatch reports whether name lies in a directory watched for the
// server file or rules_dir (not only for the runtime section, whose events
// matter only as runtimeWatch says).
func (w *Watcher) inFileWatch(name string) bool {
	dir := filepath.Dir(name)
	for p := range w.watch.paths {
		if dir == filepath.Dir(p) || dir == p || name == p || name == filepath.Dir(p) {
			return true
		}
	}
	return false
}
