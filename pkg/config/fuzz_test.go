package config

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"strings"
	"testing"
)

// noFS is a file system with nothing in it, so that fuzzed rules_dir
// values never read the machine's files.
type noFS struct{}

var errNoFS = errors.New("no file system while fuzzing")

func (noFS) ReadDir(string) ([]fs.DirEntry, error) { return nil, errNoFS }
func (noFS) Stat(string) (fs.FileInfo, error)      { return nil, errNoFS }
func (noFS) Open(string) (io.ReadCloser, error)    { return nil, errNoFS }

// FuzzLoad checks that no input makes the loader panic, that every problem
// is reported as "fuzz.yaml...", and that a valid config renders (Redacted)
// to YAML that loads back to the same effective config. Seeds: the files
// under testdata/fuzz/FuzzLoad (built from the good and bad test files and
// tricky YAML) and the ones below.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("domains: [{domain: d, descriptors: [{key: k, value: 'a*b*', share_threshold: true, rate_limit: {unit: SECOND, requests_per_unit: 0}}]}]"))
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("<<: {grpc_addr: '127.0.0.1:1'}\nhttp_addr: 127.0.0.1:2"))
	f.Add([]byte("merge_domain_config: true\ndomains: [{domain: d, descriptors: [{key: a, quota_mode: true, metadata: &m {x: [1, 2.5, null, true, '9'], y: {<<: {z: 1}}}, rate_limit: {unit: minute, requests_per_unit: 1}}]}, {domain: d, descriptors: [{key: b, metadata: {m: *m, big: 1e300, n: -0}}]}]"))
	f.Add([]byte("domains: [{domain: d, descriptors: [{key: a, metadata: {a: {b: {c: {d: {e: [[[[[]]]]]}}}}, t: 2001-12-14, bin: !!binary aGk=}}]}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := load(bytes.NewReader(data), "fuzz.yaml", noFS{})
		if err != nil {
			for _, line := range strings.Split(err.Error(), "\n") {
				if !strings.HasPrefix(line, "fuzz.yaml") && !strings.HasPrefix(line, "config: ") {
					t.Fatalf("error line %q names no file", line)
				}
			}
			return
		}
		out, err := cfg.Redacted()
		if err != nil {
			t.Fatalf("Redacted: %v", err)
		}
		if bytes.Contains(out, []byte(RedactedText)) {
			return // secrets do not round-trip, by design
		}
		again, err := load(bytes.NewReader(out), "fuzz.yaml", noFS{})
		if err != nil {
			t.Fatalf("the output of Redacted does not load: %v\noutput:\n%s", err, out)
		}
		out2, err := again.Redacted()
		if err != nil {
			t.Fatalf("Redacted again: %v", err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("Redacted is not stable:\nfirst:\n%s\nsecond:\n%s", out, out2)
		}
	})
}
