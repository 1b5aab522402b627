// Package certs serves TLS for the gRPC listener from PEM files that are
// read again when they change on disk, so that a renewed certificate (for
// example a cert-manager Secret mounted in the pod) is used without a
// restart, optionally requiring client certificates (mutual TLS).
//
// A change is noticed at the next handshake after it: handshakes look at
// the files' metadata at most once per Options.CheckEvery, and read them
// only when it changed. Envoy keeps its connections open for long, so
// handshakes are rare and the check costs next to nothing; connections
// established before a rotation keep the certificate they were set up with.
// A rotation caught half-way (a new certificate with the old key) fails to
// load and is retried at the next check; until a consistent set loads, the
// previous one keeps serving.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckEvery is how often, at most, handshakes check the files.
const DefaultCheckEvery = time.Second

// maxFile bounds each PEM file read.
const maxFile = 1 << 20

// Options configure a Reloader. CertFile and KeyFile are required; other
// zero values are the defaults given per field.
type Options struct {
	// CertFile is the PEM server certificate, followed by its intermediate
	// CAs; KeyFile is its private key (PEM).
	CertFile, KeyFile string
	// ClientCAFile, when set, is a PEM bundle of the CAs that sign client
	// certificates: every client must present a certificate that verifies
	// against it, or the handshake fails (mutual TLS).
	ClientCAFile string
	// OptionalClientCert, with ClientCAFile, lets clients without a
	// certificate complete the handshake; a certificate that is presented
	// must still verify. The server then decides per request
	// (http.Request.TLS.VerifiedChains), e.g. to leave health probes open.
	OptionalClientCert bool
	// NextProtos are the ALPN protocols offered (default "h2", for gRPC; an
	// HTTP server wants "h2" and "http/1.1").
	NextProtos []string
	// MinVersion is tls.VersionTLS12 (default) or tls.VersionTLS13.
	MinVersion uint16
	// CheckEvery is how often, at most, a handshake checks whether the
	// files changed (default 1s).
	CheckEvery time.Duration
	// Now returns the current time (default time.Now).
	Now func() time.Time
	// OnReload is called, on the handshake's goroutine, after new files
	// were loaded. Optional.
	OnReload func(Info)
	// OnError is called, on the handshake's goroutine, when changed files
	// fail to load (the previous certificate keeps serving); it is called
	// once per broken version of the files. Optional.
	OnError func(error)
}

// Info describes the certificate being served.
type Info struct {
	// Subject and DNSNames name the server certificate; NotAfter is when
	// it expires (worth alerting on).
	Subject  string
	DNSNames []string
	NotAfter time.Time
	// ClientCAs is the number of client CA certificates (0 without mTLS).
	ClientCAs int
}

// Reloader hands out the TLS configuration of the current files. Build it
// with New; it is safe for concurrent use and starts no goroutine.
type Reloader struct {
	opts  Options
	cur   atomic.Pointer[generation]
	next  atomic.Int64 // unix ns of the next check
	mu    sync.Mutex   // serializes loads
	stale fileSet      // the last set of files that failed to load
}

// generation is one loaded set of files.
type generation struct {
	cfg   *tls.Config
	files fileSet
	info  Info
}

// fileSet identifies the versions of the files: what os.Stat (which
// follows symlinks, as Kubernetes volumes need) says of each.
type fileSet [3]os.FileInfo

func (a fileSet) equal(b fileSet) bool {
	for i := range a {
		switch {
		case a[i] == nil || b[i] == nil:
			if a[i] != b[i] {
				return false
			}
		case !os.SameFile(a[i], b[i]) || a[i].Size() != b[i].Size() || !a[i].ModTime().Equal(b[i].ModTime()):
			return false
		}
	}
	return true
}

// New loads the files and returns their Reloader, or an error naming the
// file that does not load.
func New(opts Options) (*Reloader, error) {
	switch {
	case opts.CertFile == "" || opts.KeyFile == "":
		return nil, errors.New("certs: a certificate file and a key file are required")
	case opts.MinVersion == 0:
		opts.MinVersion = tls.VersionTLS12
	case opts.MinVersion != tls.VersionTLS12 && opts.MinVersion != tls.VersionTLS13:
		return nil, fmt.Errorf("certs: minimum TLS version %#x: want TLS 1.2 or 1.3", opts.MinVersion)
	}
	switch {
	case opts.CheckEvery == 0:
		opts.CheckEvery = DefaultCheckEvery
	case opts.CheckEvery < 0:
		return nil, fmt.Errorf("certs: negative check interval %v", opts.CheckEvery)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if len(opts.NextProtos) == 0 {
		opts.NextProtos = []string{"h2"}
	}
	r := &Reloader{opts: opts}
	files, err := r.stat()
	if err != nil {
		return nil, err
	}
	g, err := r.load(files)
	if err != nil {
		return nil, err
	}
	r.cur.Store(g)
	r.next.Store(opts.Now().Add(opts.CheckEvery).UnixNano())
	return r, nil
}

// TLSConfig returns the listener's configuration: each handshake gets the
// configuration of the current files (tls.Config.GetConfigForClient). Wrap
// it with grpc's credentials.NewTLS.
func (r *Reloader) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:         r.opts.MinVersion,
		NextProtos:         r.opts.NextProtos,
		GetConfigForClient: r.getConfigForClient,
	}
}

// Info describes the certificate being served.
func (r *Reloader) Info() Info { return r.cur.Load().info }

// Reload checks the files now and loads them if they changed. It returns
// the error of changed files that fail to load (the previous ones keep
// serving).
func (r *Reloader) Reload() error {
	return r.check(true)
}

func (r *Reloader) getConfigForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	now := r.opts.Now().UnixNano()
	if next := r.next.Load(); now >= next && r.next.CompareAndSwap(next, now+int64(r.opts.CheckEvery)) {
		_ = r.check(false) // reported through OnError
	}
	return r.cur.Load().cfg, nil
}

// check loads the files if they changed since the current generation.
// force retries a set that failed before.
func (r *Reloader) check(force bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	files, err := r.stat()
	if err != nil {
		if force || !files.equal(r.stale) {
			r.stale = files
			r.fail(err)
		}
		return err
	}
	if files.equal(r.cur.Load().files) || !force && files.equal(r.stale) {
		return nil
	}
	g, err := r.load(files)
	if err != nil {
		r.stale = files
		r.fail(err)
		return err
	}
	r.stale = fileSet{}
	r.cur.Store(g)
	if r.opts.OnReload != nil {
		r.opts.OnReload(g.info)
	}
	return nil
}

func (r *Reloader) fail(err error) {
	if r.opts.OnError != nil {
		r.opts.OnError(err)
	}
}

// stat describes the files; a missing one is an error (and nil in the
// set).
func (r *Reloader) stat() (fileSet, error) {
	var fs fileSet
	var errs []error
	for i, p := range []string{r.opts.CertFile, r.opts.KeyFile, r.opts.ClientCAFile} {
		if p == "" {
			continue
		}
		info, err := os.Stat(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("certs: %w", err))
			continue
		}
		fs[i] = info
	}
	return fs, errors.Join(errs...)
}

// load reads the files into a new generation.
func (r *Reloader) load(files fileSet) (*generation, error) {
	certPEM, err := readFile(r.opts.CertFile)
	if err != nil {
		return nil, err
	}
	keyPEM, err := readFile(r.opts.KeyFile)
	if err != nil {
		return nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: %s and %s: %w", r.opts.CertFile, r.opts.KeyFile, err)
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return nil, fmt.Errorf("certs: %s: %w", r.opts.CertFile, err)
		}
	}
	cfg := &tls.Config{
		MinVersion:   r.opts.MinVersion,
		NextProtos:   r.opts.NextProtos,
		Certificates: []tls.Certificate{pair},
	}
	info := Info{Subject: leaf.Subject.String(), DNSNames: leaf.DNSNames, NotAfter: leaf.NotAfter}
	if r.opts.ClientCAFile != "" {
		caPEM, err := readFile(r.opts.ClientCAFile)
		if err != nil {
			return nil, err
		}
		pool, n, err := parseCAs(caPEM)
		if err != nil {
			return nil, fmt.Errorf("certs: %s: %w", r.opts.ClientCAFile, err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
		if r.opts.OptionalClientCert {
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		}
		info.ClientCAs = n
	}
	return &generation{cfg: cfg, files: files, info: info}, nil
}

// readFile is ReadFile with the package's prefix.
func readFile(path string) ([]byte, error) {
	b, err := ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return b, nil
}

// parseCAs parses every CERTIFICATE block of data.
func parseCAs(data []byte) (*x509.CertPool, int, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, 0, fmt.Errorf("certificate %d: %w", n+1, err)
		}
		pool.AddCert(c)
		n++
	}
	if n == 0 {
		return nil, 0, errors.New("no PEM certificate found: expected the CA certificates that sign client certificates")
	}
	return pool, n, nil
}

// String formats i for logs.
func (i Info) String() string {
	return fmt.Sprintf("subject=%q dns=%s not_after=%s client_cas=%d", i.Subject, strings.Join(i.DNSNames, ","), i.NotAfter.UTC().Format(time.RFC3339), i.ClientCAs)
}
