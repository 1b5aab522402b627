package main

import (
	"fmt"
	"io"
	"time"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/server"
)

// descriptorFlags collects repeated --descriptor k=v[,k=v...] flags.
type descriptorFlags []descriptor.Descriptor

func (f *descriptorFlags) String() string { return fmt.Sprint(*f) }

func (f *descriptorFlags) Set(s string) error {
	d, err := descriptor.ParseDescriptor(s)
	if err != nil {
		return err
	}
	*f = append(*f, d)
	return nil
}

// explain prints how the rules of a server file treat a request's
// descriptors, without counting anything: descriptors given with
// --descriptor (a RateLimitService request), or those the authz: section
// extracts from an HTTP request given with --ip, --header, --host,
// --method and --path (a Check request).
func explain(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		path, domain string
		ds           descriptorFlags
		req          requestFlags
	)
	fs := newFlagSet("explain", "explain --config FILE (--domain D --descriptor k=v[,k=v...] [--descriptor ...] | [--ip IP] [--header name:value ...] [--method M] [--host H] --path P)", stderr)
	fs.StringVar(&path, "config", "", "server config file (env "+envConfig+")")
	fs.StringVar(&domain, "domain", "", "rate limit domain of the request")
	fs.Var(&ds, "descriptor", "a descriptor as key=value[,key=value...] (repeatable; '\\' escapes ',' and '=')")
	req.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := fromEnv(fs, getenv, map[string]string{"config": envConfig}); err != nil {
		return err
	}
	env, err := detectEnv(path, getenv, stderr)
	if err != nil {
		return err
	}
	if env == nil {
		if err := requireConfig(fs, path); err != nil {
			return err
		}
	}
	load := func() (*config.Config, error) { return config.LoadFile(path) }
	if env != nil {
		load = env.load
	}
	if req.set() {
		if domain != "" || len(ds) > 0 {
			fmt.Fprintln(stderr, "extauthz explain: give either --domain and --descriptor, or a request (--ip, --header, --host, --path)")
			fs.Usage()
			return errUsage
		}
		cfg, err := load()
		if err != nil {
			return configError(stderr, err)
		}
		return explainRequest(stdout, cfg, &req, time.Now())
	}
	if domain == "" || len(ds) == 0 {
		fmt.Fprintln(stderr, "extauthz explain: --domain and at least one --descriptor are required")
		fs.Usage()
		return errUsage
	}
	cfg, err := load()
	if err != nil {
		return configError(stderr, err)
	}
	return server.Explain(stdout, cfg.Rules, domain, ds)
}
