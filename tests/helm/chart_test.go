package helm_test

import (
	"crypto/x509"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/extauthz/extauthz/examples/envoy/envoycheck"
	"github.com/extauthz/extauthz/internal/testcerts"
	"github.com/extauthz/extauthz/pkg/config"
)

// ciValues lists the chart's ci/*-values.yaml files; every one is linted
// and rendered, and each needs a case in TestTemplate.
func ciValues(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*-values.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("got ci values %v (%v), want some", files, err)
	}
	return files
}

func TestLint(t *testing.T) {
	for _, f := range append([]string{""}, ciValues(t)...) {
		name := filepath.Base(f)
		if f == "" {
			name = "defaults"
		}
		t.Run(name, func(t *testing.T) {
			args := []string{"lint", "--strict", chartDir, "--kube-version", kubeVersion}
			if f != "" {
				args = append(args, "-f", f)
			}
			// Sidecar mode needs an upstream; the ci files that use it set one.
			if _, err := runHelm(t, args...); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// templateCase is one rendering of the chart.
type templateCase struct {
	name string
	// file is a values file under the chart's ci/ directory ("" for none).
	file string
	set  []string
	// existingRules is rules.existingConfigMap: its rule files are taken
	// from testdata/existing-rules when the config is loaded.
	existingRules string
	// requests are sample requests for the sidecar's Envoy config, on top
	// of the ones envoycheck synthesizes.
	requests []*envoycheck.Request
	check    func(t *testing.T, m *manifests, cfg *config.Config)
}

func TestTemplate(t *testing.T) {
	cases := []templateCase{
		{
			name: "defaults",
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				if got := *m.Deployment.Spec.Replicas; got != 2 {
					t.Errorf("got replicas %d, want 2", got)
				}
				if m.HPA != nil || m.PDB != nil || m.ServiceMonitor != nil {
					t.Errorf("got HPA %v, PDB %v, ServiceMonitor %v, want none by default", m.HPA != nil, m.PDB != nil, m.ServiceMonitor != nil)
				}
				if m.container("envoy") != nil {
					t.Error("standalone mode renders an envoy container")
				}
				wantPorts(t, m.Service, map[string]int32{"grpc": 8081, "http": 8080})
				if got := backendTypes(cfg); !slices.Equal(got, []string{"memory"}) {
					t.Errorf("got backends %v, want [memory]", got)
				}
				if cfg.GRPCAddr != "0.0.0.0:8081" || cfg.HTTPAddr != "0.0.0.0:8080" {
					t.Errorf("got grpc_addr %q http_addr %q, want 0.0.0.0:8081 and 0.0.0.0:8080", cfg.GRPCAddr, cfg.HTTPAddr)
				}
				if !slices.Equal(cfg.Rules.Domains(), []string{"edge"}) {
					t.Errorf("got domains %v, want [edge]", cfg.Rules.Domains())
				}
			},
		},
		{
			name: "standalone memory with autoscaling",
			file: "standalone-memory-values.yaml",
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				if m.HPA == nil || m.HPA.Spec.MaxReplicas != 6 || *m.HPA.Spec.MinReplicas != 2 || len(m.HPA.Spec.Metrics) != 2 {
					t.Errorf("got HPA %+v, want 2..6 replicas on cpu and memory", m.HPA)
				}
				if m.Deployment.Spec.Replicas != nil {
					t.Errorf("got replicas %d with an HPA, want unset", *m.Deployment.Spec.Replicas)
				}
				if m.PDB == nil || m.PDB.Spec.MinAvailable == nil || m.PDB.Spec.MinAvailable.String() != "50%" || m.PDB.Spec.MaxUnavailable != nil {
					t.Errorf("got PDB %+v, want minAvailable 50%% only", m.PDB)
				}
				if m.ServiceMonitor == nil {
					t.Fatal("got no ServiceMonitor, want one")
				}
				if got := labelsOf(m.ServiceMonitor)["release"]; got != "prometheus" {
					t.Errorf("got ServiceMonitor label release=%q, want prometheus", got)
				}
				if cfg.DefaultAlgorithm.String() != "sliding_window" || !cfg.ResponseHeaders.Draft || !cfg.OverLimitBody {
					t.Errorf("got algorithm %s, draft %v, over_limit_body %v, want the values file's", cfg.DefaultAlgorithm, cfg.ResponseHeaders.Draft, cfg.OverLimitBody)
				}
				if !slices.Equal(cfg.Rules.Domains(), []string{"edge", "internal"}) {
					t.Errorf("got domains %v, want [edge internal]", cfg.Rules.Domains())
				}
			},
		},
		{
			name: "admin token from a Secret, metrics protected",
			set: []string{"admin.token.existingSecret=admin-auth", "admin.token.key=tok",
				"admin.protectMetrics=true", "serviceMonitor.enabled=true"},
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				v := m.volume("admin-token")
				if v == nil || v.Secret == nil || v.Secret.SecretName != "admin-auth" ||
					len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "tok" {
					t.Fatalf("got admin token volume %+v, want key tok of Secret admin-auth", v)
				}
				mounted := false
				for _, vm := range m.container("extauthz").VolumeMounts {
					if vm.Name == "admin-token" && strings.HasSuffix(cfg.Admin.Auth.TokenFile, filepath.Join(vm.MountPath, v.Secret.Items[0].Path)) {
						mounted = true
					}
				}
				if !mounted {
					t.Errorf("admin.auth.token_file %q is not where the Secret is mounted", cfg.Admin.Auth.TokenFile)
				}
				if !cfg.Admin.ProtectMetrics {
					t.Error("admin.protectMetrics did not set admin.protect_metrics")
				}
				if m.ServiceMonitor == nil {
					t.Fatal("got no ServiceMonitor, want one")
				}
				auth, _ := json.Marshal(m.ServiceMonitor["spec"])
				if !strings.Contains(string(auth), `"credentials":{"key":"tok","name":"admin-auth"}`) {
					t.Errorf("ServiceMonitor does not send the admin token: %s", auth)
				}
			},
		},
		{
			name: "rules from xDS",
			set:  []string{"config.rules_xds.address=xds.example:18000", "rules.domains=null"},
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				if cfg.RulesDir != "" || cfg.RulesXDS == nil || cfg.RulesXDS.Address != "xds.example:18000" {
					t.Errorf("got rules_dir %q, rules_xds %+v; want no rules_dir and the xDS address", cfg.RulesDir, cfg.RulesXDS)
				}
			},
		},
		{
			name: "no admin token by default",
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				if m.volume("admin-token") != nil || cfg.Admin.Auth.TokenFile != "" || cfg.Admin.ProtectMetrics {
					t.Errorf("got admin token volume or settings %+v without admin values", cfg.Admin)
				}
			},
		},
		{
			name: "standalone redis with password and TLS",
			file: "standalone-redis-values.yaml",
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				pw := m.volume("redis-password")
				if pw == nil || pw.Secret == nil || pw.Secret.SecretName != "redis-auth" ||
					len(pw.Secret.Items) != 1 || pw.Secret.Items[0].Key != "redis-password" {
					t.Errorf("got password volume %+v, want key redis-password of Secret redis-auth", pw)
				}
				if v := m.volume("redis-tls"); v == nil || v.Secret == nil || v.Secret.SecretName != "redis-tls" {
					t.Errorf("got TLS volume %+v, want Secret redis-tls", v)
				}
				be := rawBackend(t, m)
				if be["url"] != "rediss://redis-master.redis.svc.cluster.local:6380/0" {
					t.Errorf("got redis url %v, want the values file's", be["url"])
				}
				tls, _ := be["tls"].(map[string]any)
				for _, k := range []string{"ca_file", "cert_file", "key_file"} {
					if _, ok := tls[k].(string); !ok {
						t.Errorf("got tls %v, want %s", tls, k)
					}
				}
				if got := backendTypes(cfg); !slices.Equal(got, []string{"redis"}) {
					t.Errorf("got backends %v, want [redis]", got)
				}
				if m.PDB == nil || m.PDB.Spec.MaxUnavailable == nil || m.PDB.Spec.MaxUnavailable.IntValue() != 1 {
					t.Errorf("got PDB %+v, want maxUnavailable 1", m.PDB)
				}
			},
		},
		{
			name:          "standalone sentinel with existing rules",
			file:          "standalone-sentinel-values.yaml",
			existingRules: "my-ratelimit-rules",
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				if _, ok := m.ConfigMaps["rel-extauthz-rules"]; ok {
					t.Error("rendered a rules ConfigMap, want the existing one only")
				}
				if v := m.volume("rules"); v == nil || v.ConfigMap == nil || v.ConfigMap.Name != "my-ratelimit-rules" {
					t.Errorf("got rules volume %+v, want ConfigMap my-ratelimit-rules", v)
				}
				sentinel, _ := rawBackend(t, m)["sentinel"].(map[string]any)
				if sentinel["master_name"] != "mymaster" || len(sentinel["addrs"].([]any)) != 3 {
					t.Errorf("got sentinel %v, want master mymaster and 3 addresses", sentinel)
				}
				if !cfg.Rules.HasDomain("existing") {
					t.Errorf("got domains %v, want the existing ConfigMap's", cfg.Rules.Domains())
				}
			},
		},
		{
			name: "standalone cluster with other ports",
			file: "standalone-cluster-values.yaml",
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				if m.Deployment.Name != "ratelimit" || m.Service.Name != "ratelimit" {
					t.Errorf("got names %q %q, want ratelimit", m.Deployment.Name, m.Service.Name)
				}
				wantPorts(t, m.Service, map[string]int32{"grpc": 9090, "http": 9092})
				c := m.container("extauthz")
				if p, _ := portNamed(c, "grpc"); p != 9091 {
					t.Errorf("got grpc container port %d, want 9091", p)
				}
				if cfg.GRPCAddr != "0.0.0.0:9091" || cfg.HTTPAddr != "0.0.0.0:9092" {
					t.Errorf("got grpc_addr %q http_addr %q, want ports 9091 and 9092", cfg.GRPCAddr, cfg.HTTPAddr)
				}
				cluster, _ := rawBackend(t, m)["cluster"].(map[string]any)
				if len(cluster["addrs"].([]any)) != 3 {
					t.Errorf("got cluster %v, want 3 addresses", cluster)
				}
			},
		},
		{
			name:     "sidecar defaults",
			set:      []string{"mode=sidecar", "envoy.upstream.address=app.default.svc"},
			requests: []*envoycheck.Request{req("client", "192.0.2.10", nil)},
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				wantPorts(t, m.Service, map[string]int32{"proxy": 80, "envoy-admin": 9902, "http": 8080})
			},
		},
		{
			name: "sidecar with a complete Envoy config",
			set: []string{"mode=sidecar", "file:envoy.configOverride=testdata/envoy-override.yaml",
				"envoy.domain=ignored-by-the-override"},
			requests: []*envoycheck.Request{req("api", "192.0.2.10", nil)},
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				data := m.ConfigMaps["rel-extauthz-envoy"].Data["envoy.yaml"]
				want, err := os.ReadFile(filepath.Join("testdata", "envoy-override.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				if strings.TrimSpace(data) != strings.TrimSpace(string(want)) {
					t.Errorf("got envoy.yaml\n%s\nwant the override verbatim", data)
				}
			},
		},
		{
			name: "sidecar with redis and many limits",
			file: "sidecar-values.yaml",
			requests: []*envoycheck.Request{
				req("partner key", "192.0.2.10", map[string]string{"x-api-key": "partner-acme"}),
				req("other key", "192.0.2.10", map[string]string{"x-api-key": "k-123"}),
				req("tenant", "2001:db8::5", map[string]string{"x-tenant-id": "t1"}),
			},
			check: func(t *testing.T, m *manifests, cfg *config.Config) {
				if m.Service.Spec.Type != corev1.ServiceTypeLoadBalancer || m.Service.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyLocal {
					t.Errorf("got service type %s policy %s, want LoadBalancer Local", m.Service.Spec.Type, m.Service.Spec.ExternalTrafficPolicy)
				}
				var ports []string
				for _, e := range m.ServiceMonitor["spec"].(map[string]any)["endpoints"].([]any) {
					ports = append(ports, e.(map[string]any)["port"].(string))
				}
				if !slices.Equal(ports, []string{"http", "envoy-admin"}) {
					t.Errorf("got ServiceMonitor ports %v, want [http envoy-admin]", ports)
				}
				if got := backendTypes(cfg); !slices.Equal(got, []string{"redis"}) {
					t.Errorf("got backends %v, want [redis]", got)
				}
			},
		},
	}

	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.file] = true
	}
	for _, f := range ciValues(t) {
		if !covered[filepath.Base(f)] {
			t.Errorf("ci/%s has no case in TestTemplate", filepath.Base(f))
		}
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var files []string
			if tc.file != "" {
				files = []string{filepath.Join(chartDir, "ci", tc.file)}
			}
			out, err := render(t, files, tc.set...)
			if err != nil {
				t.Fatal(err)
			}
			m, err := decodeManifests(out)
			if err != nil {
				t.Fatal(err)
			}
			checkInvariants(t, m, tc.existingRules)
			cfg := loadConfig(t, m, tc.existingRules)
			if m.container("envoy") != nil {
				checkSidecar(t, m, cfg, tc.requests)
			}
			if tc.check != nil && cfg != nil {
				tc.check(t, m, cfg)
			}
		})
	}
}

func req(name, ip string, headers map[string]string) *envoycheck.Request {
	return &envoycheck.Request{Name: name, RemoteAddr: netip.MustParseAddr(ip), Method: "GET", Path: "/",
		Authority: "shop.example.com", Headers: headers}
}

func wantPorts(t *testing.T, s *corev1.Service, want map[string]int32) {
	t.Helper()
	got := map[string]int32{}
	for _, p := range s.Spec.Ports {
		got[p.Name] = p.Port
	}
	if len(got) != len(want) {
		t.Errorf("got service ports %v, want %v", got, want)
		return
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("got service ports %v, want %v", got, want)
			return
		}
	}
}

func labelsOf(obj map[string]any) map[string]any {
	md, _ := obj["metadata"].(map[string]any)
	l, _ := md["labels"].(map[string]any)
	return l
}

func backendTypes(cfg *config.Config) []string {
	var out []string
	for _, b := range cfg.Backends {
		out = append(out, b.Type)
	}
	return out
}

// rawBackend returns the first backend of the rendered extauthz.yaml as
// plain YAML.
func rawBackend(t *testing.T, m *manifests) map[string]any {
	t.Helper()
	var c struct {
		Backends []map[string]any `json:"backends"`
	}
	if err := yaml.Unmarshal([]byte(configText(t, m)), &c); err != nil || len(c.Backends) == 0 {
		t.Fatalf("got backends %v (%v), want one", c.Backends, err)
	}
	return c.Backends[0]
}

// configText returns the extauthz.yaml the extauthz container is started
// with.
func configText(t *testing.T, m *manifests) string {
	t.Helper()
	c := m.container("extauthz")
	path, _ := argAfter(c.Args, "--config")
	vm, rel := mountFor(c, path)
	if vm == nil {
		t.Fatalf("--config %s is not in a mounted volume", path)
	}
	v := m.volume(vm.Name)
	if v == nil || v.ConfigMap == nil || m.ConfigMaps[v.ConfigMap.Name] == nil {
		t.Fatalf("--config %s: volume %q is not a rendered ConfigMap", path, vm.Name)
	}
	data, ok := m.ConfigMaps[v.ConfigMap.Name].Data[rel]
	if !ok {
		t.Fatalf("--config %s: ConfigMap %s has no key %q", path, v.ConfigMap.Name, rel)
	}
	return data
}

// checkInvariants checks what every rendering must satisfy.
func checkInvariants(t *testing.T, m *manifests, existingRules string) {
	t.Helper()
	if m.Deployment == nil || m.Service == nil {
		t.Fatalf("got Deployment %v, Service %v, want both", m.Deployment != nil, m.Service != nil)
	}
	pod := &m.Deployment.Spec.Template
	podLabels := pod.Labels
	subset := func(what string, sel map[string]string) {
		t.Helper()
		if len(sel) == 0 {
			t.Errorf("%s: empty selector", what)
		}
		for k, v := range sel {
			if podLabels[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pod labels %v", what, k, v, podLabels)
			}
		}
	}
	subset("Deployment", m.Deployment.Spec.Selector.MatchLabels)
	subset("Service", m.Service.Spec.Selector)
	if m.PDB != nil {
		subset("PodDisruptionBudget", m.PDB.Spec.Selector.MatchLabels)
	}
	if m.HPA != nil {
		if ref := m.HPA.Spec.ScaleTargetRef; ref.Kind != "Deployment" || ref.Name != m.Deployment.Name {
			t.Errorf("got HPA target %s/%s, want Deployment/%s", ref.Kind, ref.Name, m.Deployment.Name)
		}
	}
	if sa := pod.Spec.ServiceAccountName; m.ServiceAccount != nil && sa != m.ServiceAccount.Name {
		t.Errorf("got serviceAccountName %q, want the rendered %q", sa, m.ServiceAccount.Name)
	}

	// Non-root, read-only, no privileges, resources.
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}
	for _, c := range pod.Spec.Containers {
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("container %s: no securityContext", c.Name)
			continue
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: root filesystem is writable", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: privilege escalation allowed", c.Name)
		case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL"):
			t.Errorf("container %s: capabilities not dropped", c.Name)
		case sc.RunAsUser != nil && *sc.RunAsUser == 0:
			t.Errorf("container %s: runs as root", c.Name)
		}
		if len(c.Resources.Requests) == 0 {
			t.Errorf("container %s: no resource requests", c.Name)
		}
		for _, vm := range c.VolumeMounts {
			v := m.volume(vm.Name)
			switch {
			case v == nil:
				t.Errorf("container %s mounts missing volume %q", c.Name, vm.Name)
			case v.ConfigMap != nil && m.ConfigMaps[v.ConfigMap.Name] == nil && v.ConfigMap.Name != existingRules:
				t.Errorf("volume %s: ConfigMap %q is neither rendered nor the existing rules", v.Name, v.ConfigMap.Name)
			}
		}
	}

	// extauthz: serve --config, probes on the http port.
	c := m.container("extauthz")
	if c == nil {
		t.Fatal("no extauthz container")
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("got args %q, want serve --config <file>", c.Args)
	}
	if _, ok := portNamed(c, "http"); !ok {
		t.Error("extauthz has no port named http")
	}
	probe := func(what string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port != intstr.FromString("http") {
			t.Errorf("got %s %+v, want GET %s on port http", what, p, path)
		}
	}
	probe("liveness probe", c.LivenessProbe, "/healthz")
	probe("readiness probe", c.ReadinessProbe, "/readyz")

	// Every Service port leads to a named container port.
	for _, sp := range m.Service.Spec.Ports {
		found := false
		for _, c := range pod.Spec.Containers {
			if _, ok := portNamed(&c, sp.TargetPort.String()); ok {
				found = true
			}
		}
		if !found {
			t.Errorf("service port %s: targetPort %s is no container port", sp.Name, sp.TargetPort.String())
		}
	}
	if m.ServiceMonitor != nil {
		spec, _ := m.ServiceMonitor["spec"].(map[string]any)
		eps, _ := spec["endpoints"].([]any)
		if len(eps) == 0 {
			t.Error("ServiceMonitor has no endpoints")
		}
		for _, e := range eps {
			port, _ := e.(map[string]any)["port"].(string)
			if !slices.ContainsFunc(m.Service.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port }) {
				t.Errorf("ServiceMonitor endpoint port %q is no Service port", port)
			}
		}
		sel, _ := spec["selector"].(map[string]any)["matchLabels"].(map[string]any)
		for k, v := range sel {
			if m.Service.Labels[k] != v {
				t.Errorf("ServiceMonitor selector %s=%v does not match the Service labels", k, v)
			}
		}
	}
}

var absPath = regexp.MustCompile(`/etc/extauthz/[^\s"']+`)

// loadConfig lays out, under a temporary root, every volume the extauthz
// container mounts (ConfigMaps as rendered, the existing rules ConfigMap
// from testdata, Secrets as generated stand-ins), and loads the config with
// pkg/config.LoadFile, exactly as the pod would see it.
func loadConfig(t *testing.T, m *manifests, existingRules string) *config.Config {
	t.Helper()
	c := m.container("extauthz")
	text := configText(t, m)
	for _, p := range absPath.FindAllString(text, -1) {
		if vm, _ := mountFor(c, p); vm == nil {
			t.Errorf("extauthz.yaml refers to %s, which no volume of the extauthz container holds", p)
		}
	}
	root := t.TempDir()
	for _, vm := range c.VolumeMounts {
		v := m.volume(vm.Name)
		dir := filepath.Join(root, vm.MountPath)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case v.ConfigMap != nil && v.ConfigMap.Name == existingRules:
			files, _ := filepath.Glob(filepath.Join("testdata", "existing-rules", "*.yaml"))
			for _, f := range files {
				data, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(dir, filepath.Base(f)), string(data))
			}
		case v.ConfigMap != nil:
			for k, data := range m.ConfigMaps[v.ConfigMap.Name].Data {
				writeFile(t, filepath.Join(dir, k), data)
			}
		case v.Secret != nil:
			for k, data := range fakeSecret(t, v.Secret) {
				writeFile(t, filepath.Join(dir, k), data)
			}
		}
	}
	path, _ := argAfter(c.Args, "--config")
	local := filepath.Join(root, path)
	// Absolute paths inside the config point into the same layout.
	writeFile(t, local, strings.ReplaceAll(text, "/etc/extauthz/", filepath.Join(root, "etc", "extauthz")+"/"))
	cfg, err := config.LoadFile(local)
	if err != nil {
		t.Errorf("rendered extauthz.yaml does not load: %v\n%s", err, text)
		return nil
	}
	return cfg
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fakeSecret returns files standing in for a Secret volume: a password,
// or a CA certificate with a client certificate and key.
func fakeSecret(t *testing.T, s *corev1.SecretVolumeSource) map[string]string {
	t.Helper()
	if len(s.Items) > 0 {
		files := map[string]string{}
		for _, it := range s.Items {
			files[it.Path] = "test-secret-of-32-characters-000" // long enough for any token_file
		}
		return files
	}
	// One self-signed certificate serves as the CA and the client.
	c := testcerts.MustCA(t, testcerts.Options{CommonName: "test", Usages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return map[string]string{
		"ca.crt":  string(c.CertPEM()),
		"tls.crt": string(c.CertPEM()),
		"tls.key": string(c.KeyPEM()),
	}
}

// checkSidecar validates the Envoy config the envoy container starts with,
// as examples/envoy's test does, against the rules extauthz loaded, and
// checks that ports and addresses agree between Envoy, extauthz and the pod.
func checkSidecar(t *testing.T, m *manifests, cfg *config.Config, requests []*envoycheck.Request) {
	t.Helper()
	e := m.container("envoy")
	path, ok := argAfter(e.Args, "--config-path")
	if !ok {
		t.Fatalf("got envoy args %q, want --config-path", e.Args)
	}
	vm, rel := mountFor(e, path)
	if vm == nil {
		t.Fatalf("envoy --config-path %s is not in a mounted volume", path)
	}
	v := m.volume(vm.Name)
	if v == nil || v.ConfigMap == nil || m.ConfigMaps[v.ConfigMap.Name] == nil {
		t.Fatalf("envoy config volume %q is not a rendered ConfigMap", vm.Name)
	}
	data := m.ConfigMaps[v.ConfigMap.Name].Data[rel]

	b, err := envoycheck.ParseBootstrap([]byte(data))
	if err != nil {
		t.Fatalf("sidecar envoy.yaml: %v\n%s", err, data)
	}
	s, err := envoycheck.RateLimits(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.RateLimitFilters) != 1 {
		t.Fatalf("got %d rate limit filters, want 1", len(s.RateLimitFilters))
	}
	if err := envoycheck.Lint(b, s); err != nil {
		t.Error(err)
	}
	if cfg == nil {
		return
	}
	matches, err := envoycheck.CheckRules(s, cfg.Rules, requests)
	for _, mt := range matches {
		t.Log(mt)
	}
	if err != nil {
		t.Error(err)
	}

	// Envoy → extauthz on 127.0.0.1:<grpc port>, and only there.
	x := m.container("extauthz")
	grpcPort, _ := portNamed(x, "grpc")
	if want := "127.0.0.1:" + strconv.Itoa(int(grpcPort)); cfg.GRPCAddr != want {
		t.Errorf("got extauthz grpc_addr %q, want %q", cfg.GRPCAddr, want)
	}
	cluster := s.RateLimitFilters[0].Config.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
	for _, cl := range b.GetStaticResources().GetClusters() {
		if cl.GetName() != cluster {
			continue
		}
		for _, le := range cl.GetLoadAssignment().GetEndpoints() {
			for _, lb := range le.GetLbEndpoints() {
				sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
				got := net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
				if got != cfg.GRPCAddr {
					t.Errorf("envoy cluster %s endpoint %s, want extauthz's grpc_addr %s", cluster, got, cfg.GRPCAddr)
				}
			}
		}
	}
	// Container ports are the listeners' ports; probes use them.
	listeners := map[uint32]bool{}
	for _, l := range b.GetStaticResources().GetListeners() {
		listeners[l.GetAddress().GetSocketAddress().GetPortValue()] = true
	}
	for _, p := range e.Ports {
		if !listeners[uint32(p.ContainerPort)] {
			t.Errorf("envoy container port %s (%d) is no listener of envoy.yaml", p.Name, p.ContainerPort)
		}
	}
	if p := e.ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/ready" {
		t.Errorf("got envoy readiness probe %+v, want GET /ready", p)
	}
	if d := m.Deployment.Spec.Template.Annotations["checksum/envoy"]; d == "" {
		t.Error("no checksum/envoy annotation: Envoy would keep a stale bootstrap after an upgrade")
	}
}

// badValues maps each file of testdata/bad to the error helm template must
// give for it: values.schema.json (or a template's required) rejects it.
var badValues = map[string]string{
	"unknown-key.yaml":              "additional properties 'replicas' not allowed",
	"bad-mode.yaml":                 "/mode",
	"managed-config-key.yaml":       "/config",
	"bad-algorithm.yaml":            "/config/default_algorithm",
	"redis-without-url.yaml":        "/backend/redis/url",
	"password-in-url.yaml":          "/backend/redis/url",
	"sentinel-without-master.yaml":  "/backend/redis/sentinel/masterName",
	"sidecar-without-upstream.yaml": "/envoy/upstream/address",
	"bad-rule-unit.yaml":            "/rules/domains/0/descriptors/0/rate_limit/unit",
	"rule-without-key.yaml":         "missing property 'key'",
	"no-rules.yaml":                 "/rules/domains",
	"bad-envoy-timeout.yaml":        "/envoy/timeout",
	"port-out-of-range.yaml":        "/ports/grpc",
	"string-replicas.yaml":          "/replicaCount",
	"hpa-without-target.yaml":       "/autoscaling",
	// Prometheus could not scrape a protected /metrics without the token.
	"metrics-protected-without-token.yaml": "/admin/token",
	// rules_xds replaces the chart's rule files: they would be ignored.
	"xds-with-rules.yaml": "/rules/domains",
}

func TestBadValues(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "bad", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if _, ok := badValues[filepath.Base(f)]; !ok {
			t.Errorf("%s has no expected error in badValues", f)
		}
	}
	for name, wantErr := range badValues {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", name)
			if _, err := os.Stat(path); err != nil {
				t.Fatal(err)
			}
			_, err := render(t, []string{path})
			if err == nil {
				t.Fatalf("helm template accepted %s, want an error containing %q", name, wantErr)
			}
			if !strings.Contains(err.Error(), wantErr) {
				t.Fatalf("got error %v, want one containing %q", err, wantErr)
			}
		})
	}
}
