// Package examples_test checks the Envoy examples offline: every Envoy config
// under examples/envoy decodes into go-control-plane's Bootstrap and passes
// ValidateAll, its filters are wired to clusters that exist, and every
// descriptor its rate_limits actions can produce matches a rule of the
// extauthz config next to it, using the server's own matcher.
package examples_test

import (
	"bytes"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/extauthz/extauthz/examples/envoy/envoycheck"
	"github.com/extauthz/extauthz/pkg/config"
)

// requests are the sample requests each Envoy config is checked with, on
// top of one request envoycheck synthesizes for every rate_limits entry.
// Key: directory/file relative to examples/envoy.
var requests = map[string][]*envoycheck.Request{
	"envoy.yaml": {
		{Name: "plain", RemoteAddr: ip("198.51.100.7"), Method: "GET", Path: "/", Authority: "localhost:10000"},
		{Name: "ipv6 client", RemoteAddr: ip("2001:db8::7"), Method: "GET", Path: "/", Authority: "localhost:10000"},
		{Name: "unknown api key", RemoteAddr: ip("198.51.100.7"), Method: "GET", Path: "/", Authority: "localhost:10000",
			Headers: map[string]string{"x-api-key": "my-key"}},
		{Name: "pro api key", RemoteAddr: ip("198.51.100.7"), Method: "GET", Path: "/", Authority: "localhost:10000",
			Headers: map[string]string{"x-api-key": "demo-pro-key"}},
		{Name: "tenant acme", RemoteAddr: ip("198.51.100.7"), Method: "GET", Path: "/", Authority: "localhost:10000",
			Headers: map[string]string{"x-tenant-id": "acme"}},
		{Name: "other tenant", RemoteAddr: ip("198.51.100.7"), Method: "GET", Path: "/", Authority: "localhost:10000",
			Headers: map[string]string{"x-tenant-id": "initech"}},
		{Name: "POST /login", RemoteAddr: ip("198.51.100.7"), Method: "POST", Path: "/login", Authority: "localhost:10000"},
		{Name: "GET /login", RemoteAddr: ip("198.51.100.7"), Method: "GET", Path: "/login?next=/", Authority: "localhost:10000"},
	},
}

// sent is one descriptor a request makes Envoy send, and the name of the
// rule it must match.
type sent struct {
	descriptor string // descriptor.Descriptor.String()
	rule       string // Rule.Name
}

// want lists, per config and request, every descriptor Envoy sends and the
// rule each matches: the walkthrough in README.md relies on these.
var want = map[string]map[string][]sent{
	"envoy.yaml": {
		"plain": {
			{"(remote_address=198.51.100.7)", "per-ip"},
			{"(generic_key=edge-global)", "global"},
		},
		"ipv6 client": {
			{"(remote_address=2001:db8::7)", "per-ip"},
			{"(generic_key=edge-global)", "global"},
		},
		"unknown api key": {
			{"(remote_address=198.51.100.7)", "per-ip"},
			{"(api_key=my-key)", "api-key"},
			{"(generic_key=edge-global)", "global"},
		},
		"pro api key": {
			{"(remote_address=198.51.100.7)", "per-ip"},
			{"(api_key=demo-pro-key)", "api-key-pro"},
			{"(generic_key=edge-global)", "global"},
		},
		"tenant acme": {
			{"(remote_address=198.51.100.7)", "per-ip"},
			{"(tenant=acme)", "tenant-acme"},
			{"(generic_key=edge-global)", "global"},
		},
		"other tenant": {
			{"(remote_address=198.51.100.7)", "per-ip"},
			{"(tenant=initech)", "tenant"},
			{"(generic_key=edge-global)", "global"},
		},
		"POST /login": {
			{"(header_match=login, remote_address=198.51.100.7)", "login-per-ip"},
			{"(remote_address=198.51.100.7)", "per-ip"},
			{"(generic_key=edge-global)", "global"},
		},
		"GET /login": {
			{"(remote_address=198.51.100.7)", "per-ip"},
			{"(generic_key=edge-global)", "global"},
		},
	},
}

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

// example is one directory of examples/envoy: Envoy configs and the extauthz
// config they talk to.
type example struct {
	dir      string
	envoy    []string // envoy*.yaml
	extauthz string   // the *authz*.yaml that is not an Envoy config
}

func findExamples(t *testing.T) []example {
	t.Helper()
	var out []example
	err := filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case !d.IsDir():
			return nil
		case d.Name() == "testdata" || d.Name() == "envoycheck":
			return filepath.SkipDir
		}
		ex := example{dir: path}
		var authz []string
		yamls, _ := filepath.Glob(filepath.Join(path, "*.yaml"))
		for _, f := range yamls {
			base := filepath.Base(f)
			switch {
			case strings.HasPrefix(base, "envoy"):
				ex.envoy = append(ex.envoy, f)
			case strings.Contains(base, "authz"):
				authz = append(authz, f)
			}
		}
		if len(ex.envoy) == 0 {
			return nil
		}
		if len(authz) != 1 {
			t.Errorf("%s: got extauthz configs %q, want exactly one *authz*.yaml beside the Envoy configs", path, authz)
			return nil
		}
		ex.extauthz = authz[0]
		out = append(out, ex)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestExamples(t *testing.T) {
	examples := findExamples(t)
	if len(examples) == 0 || examples[0].dir != "." {
		t.Fatalf("got examples %v, want at least examples/envoy itself", examples)
	}
	for _, ex := range examples {
		t.Run(ex.dir, func(t *testing.T) {
			cfg, err := config.LoadFile(ex.extauthz)
			if err != nil {
				t.Fatalf("extauthz config: %v", err)
			}
			for _, file := range ex.envoy {
				t.Run(filepath.Base(file), func(t *testing.T) {
					checkEnvoy(t, file, cfg)
				})
			}
		})
	}
}

func checkEnvoy(t *testing.T, file string, cfg *config.Config) {
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	b, err := envoycheck.ParseBootstrap(raw)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	s, err := envoycheck.RateLimits(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.RateLimitFilters) == 0 && len(s.ExtAuthzFilters) == 0 {
		t.Fatalf("%s has neither a rate limit nor an ext_authz filter", file)
	}
	if err := envoycheck.Lint(b, s); err != nil {
		t.Error(err)
	}
	// Failure modes are a decision; the examples make it visibly.
	if len(s.RateLimitFilters) > 0 && !strings.Contains(string(raw), "failure_mode_deny:") {
		t.Errorf("%s: set failure_mode_deny explicitly on the rate limit filter", file)
	}
	if len(s.ExtAuthzFilters) > 0 && !strings.Contains(string(raw), "failure_mode_allow:") {
		t.Errorf("%s: set failure_mode_allow explicitly on the ext_authz filter", file)
	}
	for _, f := range s.RateLimitFilters {
		if f.Config.GetTimeout() == nil {
			t.Errorf("%s: set the rate limit filter's timeout explicitly (Envoy's default is 20ms)", f.Where)
		}
		if d := f.Config.GetDomain(); !cfg.Rules.HasDomain(d) {
			t.Errorf("%s: domain %q has no rules in the extauthz config (domains: %v)", f.Where, d, cfg.Rules.Domains())
		}
	}

	rel := filepath.ToSlash(file)
	matches, err := envoycheck.CheckRules(s, cfg.Rules, requests[rel])
	for _, m := range matches {
		t.Log(m)
	}
	if err != nil {
		t.Error(err)
	}
	if len(s.Policies) > 0 && len(requests[rel]) == 0 {
		t.Errorf("%s has rate_limits: add sample requests for it to the requests table", rel)
	}

	wants, ok := want[rel]
	if !ok {
		return
	}
	got := map[string][]sent{}
	for _, m := range matches {
		if m.Descriptor == nil || m.Request == "synthesized" {
			continue
		}
		name := "NO RULE"
		if m.Rule != nil {
			name = m.Rule.Name
		}
		got[m.Request] = append(got[m.Request], sent{m.Descriptor.String(), name})
	}
	for _, req := range requests[rel] {
		g, w := sorted(got[req.Name]), sorted(wants[req.Name])
		if !slices.Equal(g, w) {
			t.Errorf("request %q: got descriptors → rules %v, want %v", req.Name, g, w)
		}
	}
}

func sorted(s []sent) []sent {
	s = slices.Clone(s)
	slices.SortFunc(s, func(a, b sent) int { return strings.Compare(a.descriptor, b.descriptor) })
	return s
}

// compose is the part of docker-compose.yaml the example relies on.
type compose struct {
	Services map[string]struct {
		Image   string   `yaml:"image"`
		Command []string `yaml:"command"`
		Volumes []string `yaml:"volumes"`
		Build   struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
	} `yaml:"services"`
}

// TestCompose checks that docker-compose.yaml runs the checked files and
// that the addresses in envoy.yaml, extauthz.yaml and the compose file agree.
func TestCompose(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&c); err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	for _, name := range []string{"envoy", "extauthz", "redis"} {
		if _, ok := c.Services[name]; !ok {
			t.Fatalf("docker-compose.yaml: no service %q", name)
		}
	}

	// Each program reads the file it is told to, and that file is this
	// directory's.
	mounted := func(service, flag, file string) {
		t.Helper()
		svc := c.Services[service]
		i := slices.Index(svc.Command, flag)
		if i < 0 || i+1 >= len(svc.Command) {
			t.Errorf("%s: got command %q, want %s <path>", service, svc.Command, flag)
			return
		}
		want := "./" + file + ":" + svc.Command[i+1] + ":ro"
		if !slices.Contains(svc.Volumes, want) {
			t.Errorf("%s: got volumes %q, want %q", service, svc.Volumes, want)
		}
	}
	mounted("envoy", "--config-path", "envoy.yaml")
	mounted("extauthz", "--config", "extauthz.yaml")
	if got := c.Services["extauthz"].Command; len(got) == 0 || got[0] != "serve" {
		t.Errorf("extauthz: got command %q, want the serve subcommand", got)
	}
	b := c.Services["extauthz"].Build
	if _, err := os.Stat(filepath.Join(b.Context, b.Dockerfile)); err != nil {
		t.Errorf("extauthz build: %v", err)
	}

	// Envoy's extauthz cluster → the extauthz service on its grpc_addr port.
	cfg, err := config.LoadFile("extauthz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, grpcPort, err := net.SplitHostPort(cfg.GRPCAddr)
	if err != nil {
		t.Fatalf("extauthz.yaml grpc_addr %q: %v", cfg.GRPCAddr, err)
	}
	bs, err := envoycheck.LoadBootstrap("envoy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, err := envoycheck.RateLimits(bs)
	if err != nil {
		t.Fatal(err)
	}
	cluster := s.RateLimitFilters[0].Config.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
	var endpoints []string
	for _, cl := range bs.GetStaticResources().GetClusters() {
		if cl.GetName() != cluster {
			continue
		}
		for _, le := range cl.GetLoadAssignment().GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				endpoints = append(endpoints, net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))))
			}
		}
	}
	if want := []string{net.JoinHostPort("extauthz", grpcPort)}; !slices.Equal(endpoints, want) {
		t.Errorf("envoy.yaml cluster %q: got endpoints %v, want %v (compose service, grpc_addr port)", cluster, endpoints, want)
	}

	// extauthz.yaml's Redis → the redis service.
	var rawCfg struct {
		Backends []struct {
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"backends"`
	}
	data, err := os.ReadFile("extauthz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, &rawCfg); err != nil {
		t.Fatal(err)
	}
	var redisHosts []string
	for _, be := range rawCfg.Backends {
		if be.Type == "redis" {
			u, err := url.Parse(be.URL)
			if err != nil {
				t.Fatalf("extauthz.yaml redis url: %v", err)
			}
			redisHosts = append(redisHosts, u.Host)
		}
	}
	if want := []string{"redis:6379"}; !slices.Equal(redisHosts, want) {
		t.Errorf("extauthz.yaml: got redis hosts %v, want %v (the compose service)", redisHosts, want)
	}
}
