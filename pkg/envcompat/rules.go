package envcompat

import (
	"math"
	"strconv"
	"strings"
)

// rules maps CONFIG_TYPE and the runtime directory.
func (g *gen) rules() {
	xds := []string{"FORCE_START_WITHOUT_INITIAL_CONFIG", "CONFIG_GRPC_XDS_NODE_ID", "CONFIG_GRPC_XDS_NODE_METADATA",
		"CONFIG_GRPC_XDS_SERVER_URL", "CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS",
		"CONFIG_GRPC_XDS_SERVER_USE_TLS", "CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY",
		"CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "CONFIG_GRPC_XDS_SERVER_TLS_SAN", "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL",
		"XDS_CLIENT_BACKOFF_MAX_INTERVAL", "XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "XDS_CLIENT_BACKOFF_JITTER", "XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES"}
	switch ct := g.get("CONFIG_TYPE", "FILE"); strings.ToUpper(ct) {
	case "FILE":
		for _, v := range xds {
			if g.set(v) {
				g.note(v, "has no effect with CONFIG_TYPE=FILE (as in the reference)")
			}
		}
	case "GRPC_XDS_SOTW":
		g.xds()
		for _, v := range runtimeVars {
			if g.set(v) {
				g.note(v, "has no effect with CONFIG_TYPE=GRPC_XDS_SOTW (as in the reference)")
			}
		}
		return
	default:
		g.problem("unknown: use FILE or GRPC_XDS_SOTW", g.shown("CONFIG_TYPE"))
		return
	}
	root := g.get("RUNTIME_ROOT", defaultRuntimeRoot)
	sub := g.get("RUNTIME_SUBDIRECTORY", "")
	app := g.get("RUNTIME_APPDIRECTORY", defaultAppDir)
	ignore := g.boolean("RUNTIME_IGNOREDOTFILES", false)
	watch := "root"
	if !g.boolean("RUNTIME_WATCH_ROOT", true) {
		watch = "app_directory"
	}
	g.line(0, "runtime", "", "the rule files, laid out and reloaded as by envoyproxy/ratelimit")
	g.line(1, "root", quote(root), "RUNTIME_ROOT (default "+defaultRuntimeRoot+")")
	g.line(1, "subdirectory", quote(sub), "RUNTIME_SUBDIRECTORY")
	g.line(1, "app_directory", quote(app), "RUNTIME_APPDIRECTORY (default config)")
	g.line(1, "ignore_dot_files", boolText(ignore), "RUNTIME_IGNOREDOTFILES")
	g.line(1, "watch", watch, "RUNTIME_WATCH_ROOT: true reloads when the root is swapped, false on any change in the app directory")
}

var runtimeVars = []string{"RUNTIME_ROOT", "RUNTIME_SUBDIRECTORY", "RUNTIME_APPDIRECTORY", "RUNTIME_IGNOREDOTFILES", "RUNTIME_WATCH_ROOT"}

// xds maps CONFIG_TYPE=GRPC_XDS_SOTW and its variables onto rules_xds.
func (g *gen) xds() {
	g.line(0, "rules_xds", "", "CONFIG_TYPE=GRPC_XDS_SOTW: every domain from an xDS management server")
	g.line(1, "address", quote(g.get("CONFIG_GRPC_XDS_SERVER_URL", "localhost:18000")), "CONFIG_GRPC_XDS_SERVER_URL (default localhost:18000)")
	g.line(1, "node_id", quote(g.get("CONFIG_GRPC_XDS_NODE_ID", "default")), "CONFIG_GRPC_XDS_NODE_ID (default default)")
	if md := g.get("CONFIG_GRPC_XDS_NODE_METADATA", ""); md != "" {
		g.line(1, "node_metadata", "", "CONFIG_GRPC_XDS_NODE_METADATA: key=value entries, as the reference reads them")
		for _, e := range strings.Split(md, ",") {
			if k, v, ok := strings.Cut(e, "="); ok {
				g.line(2, quote(k), quote(v), "")
			}
		}
	}
	if h := g.get("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", ""); h != "" {
		g.line(1, "headers", "", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS (key:value,key:value; secrets: move them out of this file)")
		g.secret = true
		for _, e := range strings.Split(h, ",") {
			k, v, ok := strings.Cut(e, ":")
			if !ok {
				g.problem("expected key:value[,key:value...]", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS")
				break
			}
			g.line(2, quote(k), quote(v), "")
		}
	}
	g.xdsTLS()
	g.line(1, "initial_backoff", durationText(g.duration("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "10s")), "XDS_CLIENT_BACKOFF_INITIAL_INTERVAL (default 10s)")
	g.line(1, "max_backoff", durationText(g.duration("XDS_CLIENT_BACKOFF_MAX_INTERVAL", "60s")), "XDS_CLIENT_BACKOFF_MAX_INTERVAL (default 60s)")
	if g.set("XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES") {
		g.line(1, "max_message_bytes", strconv.FormatInt(g.integer("XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES", "", 1, 256<<20), 10), "XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES")
	}
	if g.boolean("FORCE_START_WITHOUT_INITIAL_CONFIG", false) {
		g.line(1, "ready_without_rules", "true", "FORCE_START_WITHOUT_INITIAL_CONFIG=true")
	}
	for _, v := range []string{"XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "XDS_CLIENT_BACKOFF_JITTER", "CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL"} {
		if g.set(v) {
			g.note(v, "extauthz doubles the reconnect delay from initial_backoff to max_backoff, each randomised by ±20%")
		}
	}
}

// xdsTLS maps the xDS client's TLS variables.
func (g *gen) xdsTLS() {
	files := []string{"CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "CONFIG_GRPC_XDS_SERVER_TLS_SAN"}
	if !g.boolean("CONFIG_GRPC_XDS_SERVER_USE_TLS", false) {
		for _, v := range files {
			if g.set(v) {
				g.note(v, "has no effect without CONFIG_GRPC_XDS_SERVER_USE_TLS=true (as in the reference)")
			}
		}
		return
	}
	g.line(1, "tls", "", "CONFIG_GRPC_XDS_SERVER_USE_TLS=true")
	g.line(2, "enabled", "true", "")
	for i, key := range []string{"cert_file", "key_file", "ca_file", "server_name"} {
		if f := g.get(files[i], ""); f != "" {
			g.line(2, key, quote(f), files[i])
		}
	}
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// stats maps the statistics variables: extauthz exports Prometheus
// metrics at http_addr/metrics.
func (g *gen) stats() {
	statsd := []string{"STATSD_HOST", "STATSD_PORT", "USE_DOG_STATSD_MOGRIFIERS", "EXTRA_TAGS", "STATS_FLUSH_INTERVAL"}
	useStatsd := g.boolean("USE_STATSD", true)
	dog := g.boolean("USE_DOG_STATSD", false)
	if (g.set("USE_STATSD") && useStatsd) || dog || (useStatsd && len(g.setOf(statsd)) > 0) {
		vars := []string{}
		for _, v := range []string{"USE_STATSD", "USE_DOG_STATSD"} {
			if g.set(v) {
				vars = append(vars, g.shown(v))
			}
		}
		g.problem("extauthz exports Prometheus metrics at http_addr/metrics (HOST:PORT), not statsd: scrape that, set USE_STATSD=false and unset the statsd variables",
			append(vars, g.setOf(statsd)...)...)
	} else {
		for _, v := range statsd {
			if g.set(v) {
				g.note(v, "has no effect without statsd (as in the reference)")
			}
		}
	}
	if g.boolean("DISABLE_STATS", false) {
		g.note("DISABLE_STATS", "extauthz always serves its metrics at http_addr/metrics")
	}
	if g.boolean("USE_PROMETHEUS", false) {
		g.line(0, "metrics", "", "USE_PROMETHEUS=true: a listener serving only the metrics (also at http_addr/metrics)")
		g.line(1, "addr", quote(g.get("PROMETHEUS_ADDR", ":9090")), "PROMETHEUS_ADDR (default :9090)")
		g.line(1, "path", quote(g.get("PROMETHEUS_PATH", "/metrics")), "PROMETHEUS_PATH (default /metrics)")
	} else {
		for _, v := range []string{"PROMETHEUS_ADDR", "PROMETHEUS_PATH"} {
			if g.set(v) {
				g.note(v, "has no effect without USE_PROMETHEUS=true (as in the reference)")
			}
		}
	}
	if g.set("PROMETHEUS_MAPPER_YAML") {
		g.problem("extauthz's metrics have their own names (MIGRATING.md maps them), which a mapping file cannot rename: unset it and update the dashboards and alerts",
			"PROMETHEUS_MAPPER_YAML")
	}
}

// tracing maps TRACING_* onto the tracing section; the OpenTelemetry
// SDK's own OTEL_EXPORTER_OTLP_* variables are read by extauthz as by the
// reference (an unset tracing.endpoint follows them).
func (g *gen) tracing() {
	vars := []string{"TRACING_SERVICE_NAME", "TRACING_SERVICE_NAMESPACE", "TRACING_SERVICE_INSTANCE_ID", "TRACING_EXPORTER_PROTOCOL", "TRACING_SAMPLING_RATE"}
	if !g.boolean("TRACING_ENABLED", false) {
		for _, v := range vars {
			if g.set(v) {
				g.note(v, "has no effect without TRACING_ENABLED=true (as in the reference)")
			}
		}
		return
	}
	g.line(0, "tracing", "", "TRACING_ENABLED=true (the OTLP endpoint from OTEL_EXPORTER_OTLP_* as in the reference)")
	g.line(1, "enabled", "true", "")
	switch p := strings.ToLower(g.get("TRACING_EXPORTER_PROTOCOL", "http")); p {
	case "http", "grpc":
		g.line(1, "protocol", p, "TRACING_EXPORTER_PROTOCOL (default http)")
	default:
		g.problem("use http or grpc", g.shown("TRACING_EXPORTER_PROTOCOL"))
	}
	r, err := strconv.ParseFloat(g.get("TRACING_SAMPLING_RATE", "1"), 64)
	if err != nil || math.IsNaN(r) || r < 0 || r > 1 {
		g.problem("not a fraction from 0 to 1", g.shown("TRACING_SAMPLING_RATE"))
	} else {
		g.line(1, "sampling_ratio", strconv.FormatFloat(r, 'g', -1, 64), "TRACING_SAMPLING_RATE (default 1)")
	}
	g.line(1, "service_name", quote(g.get("TRACING_SERVICE_NAME", "RateLimit")), "TRACING_SERVICE_NAME (default RateLimit)")
	for _, m := range [][2]string{{"TRACING_SERVICE_NAMESPACE", "service_namespace"}, {"TRACING_SERVICE_INSTANCE_ID", "service_instance_id"}} {
		if v := g.get(m[0], ""); v != "" {
			g.line(1, m[1], quote(v), m[0])
		}
	}
}

// inert notes the variables that are set and were neither mapped nor
// reported, so that none is silently ignored.
func (g *gen) inert() {
	for _, v := range Variables {
		if !g.used[v] && g.set(v) {
			g.note(v, "has no effect with the other settings (as in the reference)")
		}
	}
}
