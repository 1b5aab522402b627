package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/extauthz/extauthz/pkg/descriptor"
)

// MaxFileSize bounds a server or rule file.
const MaxFileSize = 16 << 20

// Load reads a server file from r; name is used in error messages and to
// resolve a relative rules_dir (relative to name's directory). It reports
// every problem at once: the error joins one *Error per problem, each
// formatted "file:line:col: path: message".
func Load(r io.Reader, name string) (*Config, error) {
	return load(r, name, osFS{})
}

// LoadFile reads the server file at path, and the rule files of its
// rules_dir.
func LoadFile(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	cfg, err := Load(f, path)
	if err != nil {
		return nil, err
	}
	cfg.File = path
	return cfg, nil
}

// LoadRules reads one envoyproxy/ratelimit rule file (a domain and its
// descriptors) from r and compiles it with the default algorithm
// fixed_window; name is used in error messages.
func LoadRules(r io.Reader, name string) (*descriptor.Set, error) {
	data, err := readAll(r, name)
	if err != nil {
		return nil, err
	}
	var errs []error
	doc, err := parse(data, name)
	if err != nil {
		return nil, err
	}
	var d Domain
	dec := newDecoder(name)
	dec.decode(doc, reflectValue(&d), "")
	errs = append(errs, dec.errs...)
	if dec.tooLarge {
		return nil, joinSorted(errs)
	}
	rc := &ruleCompiler{seen: make(map[string]string)}
	rc.add(dec.checker(&errs), &d, "")
	rc.compile()
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	return descriptor.NewSet(rc.domains, descriptor.Options{})
}

// fileSystem is what loading a rules_dir needs; tests and the fuzz target
// use one that reads nothing.
type fileSystem interface {
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	Open(name string) (io.ReadCloser, error)
}

type osFS struct{}

func (osFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(name) }
func (osFS) Stat(name string) (fs.FileInfo, error)      { return os.Stat(name) }
func (osFS) Open(name string) (io.ReadCloser, error)    { return os.Open(name) }

func load(r io.Reader, name string, fsys fileSystem) (*Config, error) {
	data, err := readAll(r, name)
	if err != nil {
		return nil, err
	}
	doc, err := parse(data, name)
	if err != nil {
		return nil, err
	}
	cfg := &Config{baseDir: filepath.Dir(name)}
	var errs []error
	dec := newDecoder(name)
	dec.decode(doc, reflectValue(cfg), "")
	errs = append(errs, dec.errs...)
	if dec.tooLarge {
		return nil, joinSorted(errs)
	}
	c := dec.checker(&errs)
	cfg.validate(c)

	rc := cfg.ruleCompiler()
	for i := range cfg.Domains {
		cfg.Domains[i].File = name
		rc.add(c, &cfg.Domains[i], fmt.Sprintf("domains[%d]", i))
	}
	if cfg.RulesDir != "" {
		cfg.RulesDirPath = cfg.RulesDir
		if !filepath.IsAbs(cfg.RulesDir) {
			cfg.RulesDirPath = filepath.Join(filepath.Dir(name), cfg.RulesDir)
		}
		cfg.loadRulesDir(c, rc, fsys, &errs)
	}
	if cfg.Runtime != nil {
		*cfg.Runtime = cfg.Runtime.WithDefaults()
		if err := cfg.Runtime.Validate(); err != nil {
			c.report("runtime", err)
		} else {
			cfg.loadRuntime(c, rc, fsys, &errs)
		}
	}
	rc.compile()
	cfg.compileAuthz(c, rc.domains)
	if len(errs) > 0 {
		return nil, joinSorted(errs)
	}
	set, err := cfg.newSet(rc.domains)
	if err != nil {
		return nil, fmt.Errorf("config: %s: %w", name, err)
	}
	cfg.Rules = set
	return cfg, nil
}

// ruleCompiler returns the compiler of cfg's rule files (inline, in
// rules_dir or from xDS): its default algorithm, chains and API key
// canonicalisation.
func (cfg *Config) ruleCompiler() *ruleCompiler {
	rc := &ruleCompiler{defaultAlg: cfg.DefaultAlgorithm, chains: cfg.chainNames(), byUnit: cfg.unitChains(), seen: make(map[string]string), merge: cfg.MergeDomainConfig}
	rc.apiKeyKey, rc.keys = cfg.ruleKeys()
	return rc
}

// newSet builds the rule Set of compiled domains with cfg's settings.
func (cfg *Config) newSet(domains []descriptor.Domain) (*descriptor.Set, error) {
	return descriptor.NewSet(domains, descriptor.Options{DefaultAlgorithm: cfg.DefaultAlgorithm, Identities: cfg.ruleIdentities(), ChainsByUnit: cfg.unitChains()})
}

// loadRulesDir reads every rule file of cfg.RulesDirPath.
func (cfg *Config) loadRulesDir(c *checker, rc *ruleCompiler, fsys fileSystem, errs *[]error) {
	entries, err := fsys.ReadDir(cfg.RulesDirPath)
	if err != nil {
		c.errorf("rules_dir", "cannot read the rules directory: %v", err)
		return
	}
	var paths []string
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		path := filepath.Join(cfg.RulesDirPath, name)
		// Stat follows symlinks, as in Kubernetes ConfigMap volumes.
		if info, err := fsys.Stat(path); err != nil || !info.Mode().IsRegular() {
			continue
		}
		paths = append(paths, path)
	}
	cfg.readRuleFiles(fsys, paths, rc, errs)
}

// readRuleFiles reads the rule files at paths (from rules_dir or runtime)
// into cfg.dirDomains, queueing them on rc.
func (cfg *Config) readRuleFiles(fsys fileSystem, paths []string, rc *ruleCompiler, errs *[]error) {
	for _, path := range paths {
		d, err := readRuleFile(fsys, path, rc, errs)
		if err != nil {
			*errs = append(*errs, err)
			continue
		}
		if d != nil {
			cfg.RuleFiles = append(cfg.RuleFiles, path)
			cfg.dirDomains = append(cfg.dirDomains, *d)
		}
	}
}

func readRuleFile(fsys fileSystem, path string, rc *ruleCompiler, errs *[]error) (*Domain, error) {
	f, err := fsys.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := readAll(f, path)
	if err != nil {
		return nil, err
	}
	doc, err := parse(data, path)
	if err != nil {
		return nil, err
	}
	d := &Domain{File: path}
	dec := newDecoder(path)
	dec.decode(doc, reflectValue(d), "")
	*errs = append(*errs, dec.errs...)
	if dec.tooLarge {
		return nil, nil
	}
	rc.add(dec.checker(errs), d, "")
	return d, nil
}

func readAll(r io.Reader, name string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: read %s: %w", name, err)
	}
	if len(data) > MaxFileSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("file is larger than %d MiB", MaxFileSize>>20)}
	}
	return data, nil
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parse parses exactly one YAML document (an empty file is an empty
// mapping).
func parse(data []byte, name string) (doc *yaml.Node, err error) {
	defer func() {
		// yaml.v3 has panicked on malformed input before; a config file
		// must never crash the server or the validate command.
		if p := recover(); p != nil {
			doc, err = nil, &Error{File: name, Msg: fmt.Sprintf("invalid YAML: %v", p)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	doc = &yaml.Node{}
	if err := dec.Decode(doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}, nil
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, yamlError(name, err)
		}
		return nil, &Error{File: name, Line: extra.Line, Col: extra.Column, Msg: "a second YAML document (after ---): the file must hold exactly one"}
	}
	if len(doc.Content) == 1 && doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null" {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}, nil
	}
	return doc, nil
}

func yamlError(name string, err error) error {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{File: name, Line: line, Col: 1, Msg: "invalid YAML: " + m[2]}
	}
	return &Error{File: name, Msg: "invalid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// joinSorted joins errs ordered by file and position.
func joinSorted(errs []error) error {
	slices.SortStableFunc(errs, func(a, b error) int {
		ea, oka := a.(*Error)
		eb, okb := b.(*Error)
		switch {
		case !oka && !okb:
			return 0
		case !oka:
			return 1
		case !okb:
			return -1
		}
		return cmp.Or(cmp.Compare(ea.File, eb.File), cmp.Compare(ea.Line, eb.Line), cmp.Compare(ea.Col, eb.Col))
	})
	return errors.Join(errs...)
}
