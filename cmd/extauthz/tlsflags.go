package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"

	"github.com/extauthz/extauthz/pkg/certs"
)

// tlsFlags are the client TLS flags of the commands that call a running
// server (top, check): --ca-file, --cert-file and --key-file.
type tlsFlags struct {
	caFile, certFile, keyFile string
}

// register adds the flags to fs; listener names the listener they secure
// ("admin listener", "gRPC listener").
func (f *tlsFlags) register(fs *flag.FlagSet, listener string) {
	fs.StringVar(&f.caFile, "ca-file", "", "PEM CAs that sign the "+listener+"'s certificate (implies TLS)")
	fs.StringVar(&f.certFile, "cert-file", "", "client certificate for mTLS on the "+listener+" (with --key-file; implies TLS)")
	fs.StringVar(&f.keyFile, "key-file", "", "private key of --cert-file")
}

// set reports whether any flag asks for TLS.
func (f *tlsFlags) set() bool { return f.caFile != "" || f.certFile != "" }

// config checks the flags and returns the client TLS configuration they
// describe (system roots without --ca-file).
func (f *tlsFlags) config() (*tls.Config, error) {
	if (f.certFile == "") != (f.keyFile == "") {
		return nil, errors.New("--cert-file and --key-file go together")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.caFile != "" {
		pool, err := certs.LoadCAs(f.caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		tc.RootCAs = pool
	}
	if f.certFile != "" {
		pair, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--cert-file, --key-file: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}
