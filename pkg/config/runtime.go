package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/pkg/field"
)

// Runtime reads rule files from a directory laid out as envoyproxy/ratelimit's
// runtime (its RUNTIME_ROOT, RUNTIME_SUBDIRECTORY, RUNTIME_APPDIRECTORY,
// RUNTIME_IGNOREDOTFILES and RUNTIME_WATCH_ROOT variables), so that a
// deployment's existing runtime volume works unchanged:
//
//	runtime:
//	  root: /srv/runtime_data/current   # RUNTIME_ROOT (required)
//	  subdirectory: ratelimit           # RUNTIME_SUBDIRECTORY
//	  app_directory: config             # RUNTIME_APPDIRECTORY (default config)
//	  ignore_dot_files: false           # RUNTIME_IGNOREDOTFILES
//	  watch: root                       # root | app_directory (RUNTIME_WATCH_ROOT true | false)
//
// Every regular file under root/subdirectory/app_directory, at any depth and
// whatever its name, is a rule file (one domain each). With watch: root the
// files are found as the reference finds them: every file under
// root/subdirectory whose path, with "/" read as ".", starts with
// "app_directory." (so root/subdirectory/config.yaml counts too), and the
// rules are reloaded only when root itself is replaced (a symlink swap).
// With watch: app_directory any change inside root/subdirectory/app_directory
// reloads them. ignore_dot_files skips files and directories whose name
// starts with "." (needed when a Kubernetes ConfigMap is mounted there, whose
// "..<timestamp>" directory would otherwise define every domain twice).
// Relative paths are relative to the server file's directory. SIGHUP reloads
// in either mode.
type Runtime struct {
	Root           string `yaml:"root"`
	Subdirectory   string `yaml:"subdirectory"`
	AppDirectory   string `yaml:"app_directory"`
	IgnoreDotFiles bool   `yaml:"ignore_dot_files"`
	// Watch is "root" (default) or "app_directory".
	Watch string `yaml:"watch"`
}

// Runtime defaults and Watch values.
const (
	DefaultAppDirectory = "config"
	WatchRoot           = "root"
	WatchAppDirectory   = "app_directory"
)

// WithDefaults returns r with its zero values replaced by the defaults.
func (r Runtime) WithDefaults() Runtime {
	if r.AppDirectory == "" {
		r.AppDirectory = DefaultAppDirectory
	}
	if r.Watch == "" {
		r.Watch = WatchRoot
	}
	return r
}

// Validate checks r (with defaults filled in); the errors are *field.Error
// values at the keys of Runtime.
func (r Runtime) Validate() error {
	var errs []error
	if r.Root == "" {
		errs = append(errs, field.Errorf("root", "missing: the runtime root directory (RUNTIME_ROOT), e.g. /srv/runtime_data/current"))
	}
	if r.Watch != WatchRoot && r.Watch != WatchAppDirectory {
		errs = append(errs, field.Errorf("watch", "%q: expected %s (reload when the root is swapped, RUNTIME_WATCH_ROOT=true) or %s (reload on any change in the app directory)", r.Watch, WatchRoot, WatchAppDirectory))
	}
	if r.Watch == WatchRoot && r.Subdirectory == "" {
		errs = append(errs, field.Errorf("subdirectory", "missing: with watch: root, envoyproxy/ratelimit loads no rule file at all without a subdirectory (RUNTIME_SUBDIRECTORY); "+
			"set it to the directory under root that holds %s/, or use watch: app_directory (RUNTIME_WATCH_ROOT=false)", r.AppDirectory))
	}
	for _, p := range []struct{ key, v string }{{"subdirectory", r.Subdirectory}, {"app_directory", r.AppDirectory}} {
		if filepath.IsAbs(p.v) || slices.Contains(strings.Split(filepath.ToSlash(p.v), "/"), "..") {
			errs = append(errs, field.Errorf(p.key, "%q must be a relative path inside the root, without \"..\"", p.v))
		}
	}
	return errors.Join(errs...)
}

// runtimePaths resolves r against base (the server file's directory): the
// directory walked for rule files, and the directory below which file paths
// become the reference's dotted keys.
func (r Runtime) runtimePaths(base string) (walk, keyBase string) {
	root := r.Root
	if !filepath.IsAbs(root) {
		root = filepath.Join(base, root)
	}
	sub := filepath.Join(root, r.Subdirectory)
	if r.Watch == WatchRoot {
		return sub, sub
	}
	app := filepath.Join(sub, r.AppDirectory)
	return app, app
}

// RuntimeWatch says what a reload watcher watches for the runtime section:
// the directory dir, and in it either only events naming name (watch: root,
// where name is the root being swapped) or, when name is "", every event
// (watch: app_directory). dir is "" without a runtime section.
func (cfg *Config) RuntimeWatch() (dir, name string) {
	r := cfg.Runtime
	if r == nil {
		return "", ""
	}
	if r.Watch == WatchRoot {
		root := r.Root
		if !filepath.IsAbs(root) {
			root = filepath.Join(cfg.baseDir, root)
		}
		return filepath.Dir(root), root
	}
	walk, _ := r.runtimePaths(cfg.baseDir)
	return walk, ""
}

// runtimeFiles lists the rule files of r in the reference's order (lexical,
// depth first); paths skipped for dot files, symlinks to directories and
// unreadable entries are left out as the reference leaves them out.
func (r Runtime) runtimeFiles(fsys fileSystem, base string) ([]string, error) {
	walk, keyBase := r.runtimePaths(base)
	if _, err := fsys.Stat(walk); err != nil {
		return nil, err
	}
	var files []string
	var visit func(dir string) error
	visit = func(dir string) error {
		entries, err := fsys.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := e.Name()
			path := filepath.Join(dir, name)
			if r.IgnoreDotFiles && strings.HasPrefix(name, ".") {
				continue
			}
			if e.IsDir() {
				if err := visit(path); err != nil {
					return err
				}
				continue
			}
			// A symlink is read through; one to a directory is not walked
			// (the reference fails to read it and skips it).
			if info, err := fsys.Stat(path); err != nil || !info.Mode().IsRegular() {
				continue
			}
			if r.Watch == WatchRoot && !r.isAppKey(keyBase, path) {
				continue
			}
			files = append(files, path)
		}
		return nil
	}
	if err := visit(walk); err != nil {
		return nil, err
	}
	return files, nil
}

// isAppKey reports whether path's runtime key (its path below keyBase with
// "/" as ".") starts with the app directory and a dot, as the reference
// selects the files of watch: root.
func (r Runtime) isAppKey(keyBase, path string) bool {
	rel, err := filepath.Rel(keyBase, path)
	if err != nil {
		return false
	}
	key := strings.ReplaceAll(filepath.ToSlash(rel), "/", ".")
	return strings.HasPrefix(key, r.AppDirectory+".")
}

// loadRuntime reads every rule file of cfg.Runtime.
func (cfg *Config) loadRuntime(c *checker, rc *ruleCompiler, fsys fileSystem, errs *[]error) {
	files, err := cfg.Runtime.runtimeFiles(fsys, cfg.baseDir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			c.errorf("runtime", "the rule directory does not exist: %v; create it or correct root, subdirectory and app_directory (RUNTIME_ROOT, RUNTIME_SUBDIRECTORY, RUNTIME_APPDIRECTORY)", err)
			return
		}
		c.errorf("runtime", "cannot read the rule directory: %v", err)
		return
	}
	cfg.readRuleFiles(fsys, files, rc, errs)
}
