package envcompat

import (
	"errors"
	"strings"
	"testing"
)

// mapping is one row of TestMapping: with over applied to base, the
// document contains yaml, or the notes contain note, or the error contains
// problem.
type mapping struct {
	over    map[string]string
	yaml    string
	note    string
	problem string
}

// mappings has a row for every variable of Variables (TestMappingCovers
// checks), keyed by the variable.
var mappings = map[string][]mapping{
	"HOST":                               {{over: m("HOST", "127.0.0.1"), yaml: `http_addr: "127.0.0.1:8080"`}},
	"PORT":                               {{over: m("PORT", "9000"), yaml: `http_addr: "0.0.0.0:9000"`}, {over: m("PORT", "70000"), problem: "PORT=70000: not an integer from 0 to 65535"}},
	"DEBUG_HOST":                         {{over: m("DEBUG_HOST", "127.0.0.1"), note: "DEBUG_HOST: extauthz has no separate debug listener"}},
	"DEBUG_PORT":                         {{over: m("DEBUG_PORT", "6070"), note: "DEBUG_PORT: extauthz has no separate debug listener"}},
	"GRPC_UDS":                           {{over: m("GRPC_UDS", "/tmp/s"), problem: "GRPC_UDS: extauthz listens on TCP only"}},
	"GRPC_HOST":                          {{over: m("GRPC_HOST", "10.1.2.3"), yaml: `grpc_addr: "10.1.2.3:8081"`}},
	"GRPC_PORT":                          {{over: m("GRPC_PORT", "9001"), yaml: `grpc_addr: "0.0.0.0:9001"`}},
	"GRPC_MAX_CONNECTION_AGE":            {{yaml: "max_connection_age: 24h "}, {over: m("GRPC_MAX_CONNECTION_AGE", "5m"), yaml: "max_connection_age: 5m "}, {over: m("GRPC_MAX_CONNECTION_AGE", "5"), problem: "GRPC_MAX_CONNECTION_AGE=5: not a duration"}},
	"GRPC_MAX_CONNECTION_AGE_GRACE":      {{yaml: "max_connection_age_grace: 1h "}, {over: m("GRPC_MAX_CONNECTION_AGE_GRACE", "10s"), yaml: "max_connection_age_grace: 10s "}},
	"GRPC_SERVER_USE_TLS":                {{over: m("GRPC_SERVER_USE_TLS", "true"), problem: "needs both the certificate and the key files"}},
	"GRPC_SERVER_TLS_CERT":               {{over: tlsEnv(), yaml: `cert_file: "/c.pem"`}, {over: m("GRPC_SERVER_TLS_CERT", "/c.pem"), note: "GRPC_SERVER_TLS_CERT: has no effect without GRPC_SERVER_USE_TLS=true"}},
	"GRPC_SERVER_TLS_KEY":                {{over: tlsEnv(), yaml: `key_file: "/k.pem"`}},
	"GRPC_CLIENT_TLS_CACERT":             {{over: tlsEnv("GRPC_CLIENT_TLS_CACERT", "/ca.pem"), yaml: `client_ca_file: "/ca.pem"`}},
	"GRPC_CLIENT_TLS_SAN":                {{over: tlsEnv("GRPC_CLIENT_TLS_SAN", "spiffe://x"), problem: "GRPC_CLIENT_TLS_SAN=spiffe://x: extauthz accepts any client certificate"}},
	"LOG_LEVEL":                          {{yaml: "level: warn "}, {over: m("LOG_LEVEL", "TRACE"), yaml: "level: debug "}, {over: m("LOG_LEVEL", "warning"), yaml: "level: warn "}, {over: m("LOG_LEVEL", "loud"), problem: "LOG_LEVEL=loud: not a log level"}},
	"LOG_FORMAT":                         {{yaml: "format: text "}, {over: m("LOG_FORMAT", "Json"), yaml: "format: json "}},
	"CONFIG_TYPE":                        {{over: m("CONFIG_TYPE", "GRPC_XDS_SOTW"), yaml: `address: "localhost:18000"`}, {over: m("CONFIG_TYPE", "grpc_xds_sotw"), note: "RUNTIME_ROOT: has no effect with CONFIG_TYPE=GRPC_XDS_SOTW"}, {over: m("CONFIG_TYPE", "HTTP"), problem: "CONFIG_TYPE=HTTP: unknown: use FILE or GRPC_XDS_SOTW"}},
	"FORCE_START_WITHOUT_INITIAL_CONFIG": {{over: m("FORCE_START_WITHOUT_INITIAL_CONFIG", "true"), note: "FORCE_START_WITHOUT_INITIAL_CONFIG: has no effect with CONFIG_TYPE=FILE"}, xdsMap("FORCE_START_WITHOUT_INITIAL_CONFIG", "1", "ready_without_rules: true ")},
	"CONFIG_GRPC_XDS_NODE_ID":            {xdsRow("CONFIG_GRPC_XDS_NODE_ID"), xdsMap("CONFIG_GRPC_XDS_NODE_ID", "rl-1", `node_id: "rl-1"`)},
	"CONFIG_GRPC_XDS_NODE_METADATA":      {xdsRow("CONFIG_GRPC_XDS_NODE_METADATA"), xdsMap("CONFIG_GRPC_XDS_NODE_METADATA", "zone=eu,bad,k=a=b", "\"zone\": \"eu\" \n    \"k\": \"a=b\" \n")},
	"CONFIG_GRPC_XDS_SERVER_URL":         {xdsRow("CONFIG_GRPC_XDS_SERVER_URL"), xdsMap("CONFIG_GRPC_XDS_SERVER_URL", "xds:18000", `address: "xds:18000"`)},
	"CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL": {xdsRow("CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL"), {over: m("CONFIG_TYPE", "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL", "1s"), note: "CONFIG_GRPC_XDS_SERVER_CONNECT_RETRY_INTERVAL: extauthz doubles"}},
	"CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS":     {xdsRow("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS"), xdsMap("CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "authorization:Bearer x", `"authorization": "Bearer x"`), {over: m("CONFIG_TYPE", "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS", "nocolon"), problem: "CONFIG_GRPC_XDS_CLIENT_ADDITIONAL_HEADERS: expected key:value"}},
	"CONFIG_GRPC_XDS_SERVER_USE_TLS":                {xdsRow("CONFIG_GRPC_XDS_SERVER_USE_TLS"), xdsMap("CONFIG_GRPC_XDS_SERVER_USE_TLS", "true", "tls: # CONFIG_GRPC_XDS_SERVER_USE_TLS=true \n    enabled: true")},
	"CONFIG_GRPC_XDS_CLIENT_TLS_CERT":               {xdsRow("CONFIG_GRPC_XDS_CLIENT_TLS_CERT"), xdsMap("CONFIG_GRPC_XDS_CLIENT_TLS_CERT", "/c", `cert_file: "/c"`, "CONFIG_GRPC_XDS_SERVER_USE_TLS", "true")},
	"CONFIG_GRPC_XDS_CLIENT_TLS_KEY":                {xdsRow("CONFIG_GRPC_XDS_CLIENT_TLS_KEY"), xdsMap("CONFIG_GRPC_XDS_CLIENT_TLS_KEY", "/k", `key_file: "/k"`, "CONFIG_GRPC_XDS_SERVER_USE_TLS", "true")},
	"CONFIG_GRPC_XDS_SERVER_TLS_CACERT":             {xdsRow("CONFIG_GRPC_XDS_SERVER_TLS_CACERT"), xdsMap("CONFIG_GRPC_XDS_SERVER_TLS_CACERT", "/ca", `ca_file: "/ca"`, "CONFIG_GRPC_XDS_SERVER_USE_TLS", "true")},
	"CONFIG_GRPC_XDS_SERVER_TLS_SAN":                {xdsRow("CONFIG_GRPC_XDS_SERVER_TLS_SAN"), xdsMap("CONFIG_GRPC_XDS_SERVER_TLS_SAN", "xds.svc", `server_name: "xds.svc"`, "CONFIG_GRPC_XDS_SERVER_USE_TLS", "true"), {over: m("CONFIG_TYPE", "GRPC_XDS_SOTW", "CONFIG_GRPC_XDS_SERVER_TLS_SAN", "x"), note: "CONFIG_GRPC_XDS_SERVER_TLS_SAN: has no effect without CONFIG_GRPC_XDS_SERVER_USE_TLS=true"}},
	"XDS_CLIENT_BACKOFF_INITIAL_INTERVAL":           {xdsRow("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL"), xdsMap("XDS_CLIENT_BACKOFF_INITIAL_INTERVAL", "2s", "initial_backoff: 2s "), {over: m("CONFIG_TYPE", "GRPC_XDS_SOTW"), yaml: "initial_backoff: 10s "}},
	"XDS_CLIENT_BACKOFF_MAX_INTERVAL":               {xdsRow("XDS_CLIENT_BACKOFF_MAX_INTERVAL"), xdsMap("XDS_CLIENT_BACKOFF_MAX_INTERVAL", "2m", "max_backoff: 2m "), {over: m("CONFIG_TYPE", "GRPC_XDS_SOTW"), yaml: "max_backoff: 1m "}},
	"XDS_CLIENT_BACKOFF_RANDOM_FACTOR":              {xdsRow("XDS_CLIENT_BACKOFF_RANDOM_FACTOR"), {over: m("CONFIG_TYPE", "GRPC_XDS_SOTW", "XDS_CLIENT_BACKOFF_RANDOM_FACTOR", "0.5"), note: "XDS_CLIENT_BACKOFF_RANDOM_FACTOR: extauthz doubles"}},
	"XDS_CLIENT_BACKOFF_JITTER":                     {xdsRow("XDS_CLIENT_BACKOFF_JITTER")},
	"XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES":              {xdsRow("XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES"), xdsMap("XDS_CLIENT_MAX_MSG_SIZE_IN_BYTES", "1048576", "max_message_bytes: 1048576 ")},
	"RUNTIME_ROOT":                                  {{over: m("RUNTIME_ROOT", "/data"), yaml: `root: "/data"`}, {over: m("RUNTIME_ROOT", ""), yaml: `root: "/srv/runtime_data/current"`}},
	"RUNTIME_SUBDIRECTORY":                          {{over: m("RUNTIME_SUBDIRECTORY", "rl"), yaml: `subdirectory: "rl"`}},
	"RUNTIME_APPDIRECTORY":                          {{yaml: `app_directory: "config"`}, {over: m("RUNTIME_APPDIRECTORY", "rules"), yaml: `app_directory: "rules"`}},
	"RUNTIME_IGNOREDOTFILES":                        {{yaml: "ignore_dot_files: false "}, {over: m("RUNTIME_IGNOREDOTFILES", "1"), yaml: "ignore_dot_files: true "}, {over: m("RUNTIME_IGNOREDOTFILES", "yes"), problem: "RUNTIME_IGNOREDOTFILES=yes: not a boolean"}},
	"RUNTIME_WATCH_ROOT":                            {{yaml: "watch: root "}, {over: m("RUNTIME_WATCH_ROOT", "false"), yaml: "watch: app_directory "}},
	"MERGE_DOMAIN_CONFIG":                           {{over: m("MERGE_DOMAIN_CONFIG", "true"), yaml: "merge_domain_config: true "}, {over: m("MERGE_DOMAIN_CONFIG", "false"), yaml: "runtime:"}},
	"USE_STATSD":                                    {{over: m("USE_STATSD", "true"), problem: "USE_STATSD=true: extauthz exports Prometheus metrics"}, {over: m("USE_STATSD", ""), yaml: "runtime:"}},
	"STATSD_HOST":                                   {{over: map[string]string{"USE_STATSD": "", "STATSD_HOST": "s"}, problem: "STATSD_HOST: extauthz exports Prometheus"}, {over: m("STATSD_HOST", "s"), note: "STATSD_HOST: has no effect without statsd"}},
	"STATSD_PORT":                                   {{over: m("STATSD_PORT", "8125"), note: "STATSD_PORT: has no effect without statsd"}},
	"USE_DOG_STATSD":                                {{over: m("USE_DOG_STATSD", "true"), problem: "USE_DOG_STATSD=true: extauthz exports Prometheus"}},
	"USE_DOG_STATSD_MOGRIFIERS":                     {{over: m("USE_DOG_STATSD_MOGRIFIERS", "A"), note: "USE_DOG_STATSD_MOGRIFIERS: has no effect without statsd"}},
	"EXTRA_TAGS":                                    {{over: m("EXTRA_TAGS", "a:b"), note: "EXTRA_TAGS: has no effect without statsd"}},
	"STATS_FLUSH_INTERVAL":                          {{over: m("STATS_FLUSH_INTERVAL", "1s"), note: "STATS_FLUSH_INTERVAL: has no effect without statsd"}},
	"DISABLE_STATS":                                 {{over: m("DISABLE_STATS", "true"), note: "DISABLE_STATS: extauthz always serves its metrics"}},
	"USE_PROMETHEUS":                                {{over: m("USE_PROMETHEUS", "true"), yaml: `addr: ":9090"`}, {over: m("USE_PROMETHEUS", "true"), yaml: `path: "/metrics"`}},
	"PROMETHEUS_ADDR":                               {{over: m("PROMETHEUS_ADDR", ":9090"), note: "PROMETHEUS_ADDR: has no effect without USE_PROMETHEUS=true"}},
	"PROMETHEUS_PATH":                               {{over: map[string]string{"USE_PROMETHEUS": "true", "PROMETHEUS_PATH": "/m"}, yaml: `path: "/m"`}},
	"PROMETHEUS_MAPPER_YAML":                        {{over: m("PROMETHEUS_MAPPER_YAML", "/m.yaml"), problem: "PROMETHEUS_MAPPER_YAML: extauthz's metrics have their own names"}},
	"BACKEND_TYPE":                                  {{over: m("BACKEND_TYPE", "REDIS"), yaml: "- type: redis"}, {over: m("BACKEND_TYPE", "dynamo"), problem: "BACKEND_TYPE=dynamo: unknown backend"}},
	"CACHE_KEY_PREFIX":                              {{over: m("CACHE_KEY_PREFIX", "rl:"), yaml: `prefix: "rl:"`}},
	"LOCAL_CACHE_SIZE_IN_BYTES":                     {{over: m("LOCAL_CACHE_SIZE_IN_BYTES", "1000"), yaml: "local_cache: {enabled: true, max_keys: 7}"}, {over: m("LOCAL_CACHE_SIZE_IN_BYTES", "0"), yaml: "size: 10 "}, {over: m("LOCAL_CACHE_SIZE_IN_BYTES", "-1"), problem: "LOCAL_CACHE_SIZE_IN_BYTES=-1: not an integer"}},
	"NEAR_LIMIT_RATIO":                              {{over: m("NEAR_LIMIT_RATIO", "0.5"), yaml: "near_limit_ratio: 0.5 "}, {over: m("NEAR_LIMIT_RATIO", "NaN"), problem: "NEAR_LIMIT_RATIO=NaN: not a fraction"}, {over: m("NEAR_LIMIT_RATIO", "2"), problem: "NEAR_LIMIT_RATIO=2"}},
	"EXPIRATION_JITTER_MAX_SECONDS":                 {{over: m("EXPIRATION_JITTER_MAX_SECONDS", "300"), note: "EXPIRATION_JITTER_MAX_SECONDS: each Redis key expires"}},
	"STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT":       {{over: m("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", "true"), yaml: "count_mode: if_all_allowed "}},
	"LIMIT_RESPONSE_HEADERS_ENABLED":                {{over: m("LIMIT_RESPONSE_HEADERS_ENABLED", "true"), yaml: `limit_header: "RateLimit-Limit"`}},
	"LIMIT_LIMIT_HEADER":                            {{over: hdr("LIMIT_LIMIT_HEADER", "L"), yaml: `limit_header: "L"`}, {over: m("LIMIT_LIMIT_HEADER", "L"), note: "LIMIT_LIMIT_HEADER: has no effect without LIMIT_RESPONSE_HEADERS_ENABLED=true"}},
	"LIMIT_REMAINING_HEADER":                        {{over: hdr("LIMIT_REMAINING_HEADER", "R"), yaml: `remaining_header: "R"`}},
	"LIMIT_RESET_HEADER":                            {{over: hdr("LIMIT_RESET_HEADER", "Z"), yaml: `reset_header: "Z"`}},
	"SHADOW_MODE":                                   {{over: m("SHADOW_MODE", "true"), yaml: "shadow_mode: true "}},
	"QUOTA_MODE":                                    {{over: m("QUOTA_MODE", "true"), yaml: "quota_mode: true "}},
	"RESPONSE_DYNAMIC_METADATA":                     {{over: m("RESPONSE_DYNAMIC_METADATA", "true"), yaml: "response_dynamic_metadata: true "}},
	"HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED":       {{over: m("HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED", "true"), note: "HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED: extauthz does not start without valid rules"}},
	"REDIS_SOCKET_TYPE":                             {{over: m("REDIS_SOCKET_TYPE", ""), problem: "REDIS_SOCKET_TYPE=unix, REDIS_URL=127.0.0.1:6379: with a unix socket (REDIS_SOCKET_TYPE unset or unix) REDIS_URL is the socket's absolute path"}, {over: map[string]string{"REDIS_SOCKET_TYPE": "unix", "REDIS_URL": "/var/run/nutcracker/ratelimit.sock"}, yaml: `url: "unix:///var/run/nutcracker/ratelimit.sock"`}, {over: map[string]string{"REDIS_SOCKET_TYPE": "", "REDIS_URL": "/r.sock", "REDIS_TLS": "true"}, problem: "REDIS_TLS=true, REDIS_SOCKET_TYPE=unix: TLS is not available over a unix socket"}, {over: m("REDIS_SOCKET_TYPE", "udp"), problem: "REDIS_SOCKET_TYPE=udp: unknown socket type"}},
	"REDIS_TYPE":                                    {{over: map[string]string{"REDIS_TYPE": "cluster", "REDIS_URL": "a:1,b:2"}, yaml: `addrs: ["a:1", "b:2"]`}, {over: m("REDIS_TYPE", "ring"), problem: "REDIS_TYPE=ring: unknown Redis type"}},
	"REDIS_URL":                                     {{over: m("REDIS_URL", "redis.svc:6380"), yaml: `url: "redis://redis.svc:6380"`}, {over: m("REDIS_URL", "a:1,b:2"), problem: "REDIS_URL=a:1,b:2: expected host:port or redis://"}, {over: map[string]string{"REDIS_URL": "redis://u:p@r:6379/1", "REDIS_SOCKET_TYPE": ""}, yaml: `url: "redis://u:p@r:6379/1"`}, {over: m("REDIS_URL", "redis://r:6379?x=1"), problem: "expected host:port or redis://"}, {over: map[string]string{"REDIS_TYPE": "CLUSTER", "REDIS_URL": "redis://u:p@a:1,redis://u:p@b:2"}, yaml: `addrs: ["a:1", "b:2"]`}, {over: map[string]string{"REDIS_TYPE": "CLUSTER", "REDIS_URL": "redis://u:p@a:1,redis://u:p@b:2"}, yaml: `username: "u" # REDIS_URL (the nodes' redis://user:password@)`}, {over: map[string]string{"REDIS_TYPE": "CLUSTER", "REDIS_URL": "rediss://a:1"}, problem: "for TLS set REDIS_TLS=true"}, {over: m("REDIS_URL", ""), problem: "REDIS_URL (unset)"}},
	"REDIS_POOL_SIZE":                               {{over: m("REDIS_POOL_SIZE", "3"), yaml: "size: 3 "}, {over: m("REDIS_POOL_SIZE", "0"), problem: "REDIS_POOL_SIZE=0: not an integer from 1"}},
	"REDIS_AUTH":                                    {{over: m("REDIS_AUTH", "pw"), yaml: "password_env: REDIS_AUTH "}},
	"REDIS_SENTINEL_AUTH":                           {{over: map[string]string{"REDIS_TYPE": "SENTINEL", "REDIS_URL": "m,s:26379", "REDIS_SENTINEL_AUTH": "spw"}, yaml: `password: "spw"`}, {over: map[string]string{"REDIS_TYPE": "SENTINEL", "REDIS_URL": "m"}, problem: "expected master_name,host:port"}},
	"REDIS_TLS":                                     {{over: m("REDIS_TLS", "true"), yaml: "enabled: true "}},
	"REDIS_TLS_CLIENT_CERT":                         {{over: map[string]string{"REDIS_TLS": "true", "REDIS_TLS_CLIENT_CERT": "/c"}, yaml: `cert_file: "/c"`}, {over: m("REDIS_TLS_CLIENT_CERT", "/c"), note: "REDIS_TLS_CLIENT_CERT: has no effect with the other settings"}},
	"REDIS_TLS_CLIENT_KEY":                          {{over: map[string]string{"REDIS_TLS": "true", "REDIS_TLS_CLIENT_KEY": "/k"}, yaml: `key_file: "/k"`}},
	"REDIS_TLS_CACERT":                              {{over: map[string]string{"REDIS_TLS": "true", "REDIS_TLS_CACERT": "/ca"}, yaml: `ca_file: "/ca"`}},
	"REDIS_TLS_SKIP_HOSTNAME_VERIFICATION":          {{over: map[string]string{"REDIS_TLS": "true", "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION": "true"}, problem: "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION=true: extauthz always verifies"}},
	"REDIS_PIPELINE_WINDOW":                         {{over: m("REDIS_PIPELINE_WINDOW", "150us"), note: "REDIS_PIPELINE_WINDOW: extauthz sends"}},
	"REDIS_PIPELINE_LIMIT":                          {{over: m("REDIS_PIPELINE_LIMIT", "8"), note: "REDIS_PIPELINE_LIMIT: extauthz sends"}},
	"REDIS_USE_EXPLICIT_PIPELINE":                   {{over: m("REDIS_USE_EXPLICIT_PIPELINE", "true"), note: "REDIS_USE_EXPLICIT_PIPELINE: extauthz sends"}},
	"REDIS_TIMEOUT":                                 {{over: m("REDIS_TIMEOUT", "500ms"), yaml: "timeouts: {dial: 500ms, read: 500ms, write: 500ms} # REDIS_TIMEOUT (unset: extauthz's sidecar defaults, 250ms dial, 100ms read and write) \n    call_timeout: 500ms "}, {over: m("REDIS_TIMEOUT", "0s"), problem: "REDIS_TIMEOUT=0s: must be above 0"}},
	"REDIS_POOL_ON_EMPTY_BEHAVIOR":                  {{over: m("REDIS_POOL_ON_EMPTY_BEHAVIOR", "wait"), yaml: "size: 10 "}, {over: m("REDIS_POOL_ON_EMPTY_BEHAVIOR", "CREATE"), problem: "REDIS_POOL_ON_EMPTY_BEHAVIOR=CREATE: only WAIT"}},
	"REDIS_HEALTH_CHECK_ACTIVE_CONNECTION":          {{over: m("REDIS_HEALTH_CHECK_ACTIVE_CONNECTION", "true"), yaml: "readiness: any "}, {yaml: "readiness: always "}},
	"REDIS_PERSECOND":                               {{over: perSecond(), yaml: "chains_by_unit: {second: persecond}"}},
	"REDIS_PERSECOND_SOCKET_TYPE":                   {{over: perSecond("REDIS_PERSECOND_SOCKET_TYPE", "unix"), problem: "REDIS_PERSECOND_SOCKET_TYPE=unix"}, {over: m("REDIS_PERSECOND_SOCKET_TYPE", "tcp"), note: "REDIS_PERSECOND_SOCKET_TYPE: has no effect without REDIS_PERSECOND=true"}},
	"REDIS_PERSECOND_TYPE":                          {{over: perSecond("REDIS_PERSECOND_TYPE", "CLUSTER", "REDIS_PERSECOND_URL", "c:1"), yaml: `addrs: ["c:1"] # REDIS_PERSECOND_URL`}},
	"REDIS_PERSECOND_URL":                           {{over: perSecond(), yaml: `url: "redis://127.0.0.1:6380"`}},
	"REDIS_PERSECOND_POOL_SIZE":                     {{over: perSecond("REDIS_PERSECOND_POOL_SIZE", "4"), yaml: "size: 4 # REDIS_PERSECOND_POOL_SIZE"}},
	"REDIS_PERSECOND_AUTH":                          {{over: perSecond("REDIS_PERSECOND_AUTH", "u:p"), yaml: `password: "p"`}},
	"REDIS_PERSECOND_SENTINEL_AUTH":                 {{over: perSecond("REDIS_PERSECOND_TYPE", "SENTINEL", "REDIS_PERSECOND_URL", "m,s:1", "REDIS_PERSECOND_SENTINEL_AUTH", "sp"), yaml: `password: "sp" # REDIS_PERSECOND_SENTINEL_AUTH`}},
	"REDIS_PERSECOND_TLS":                           {{over: perSecond("REDIS_PERSECOND_TLS", "true", "REDIS_TLS_CACERT", "/ca"), yaml: "tls: # REDIS_PERSECOND_TLS=true"}},
	"REDIS_PERSECOND_PIPELINE_WINDOW":               {{over: perSecond("REDIS_PERSECOND_PIPELINE_WINDOW", "1ms"), note: "REDIS_PERSECOND_PIPELINE_WINDOW: extauthz sends"}},
	"REDIS_PERSECOND_PIPELINE_LIMIT":                {{over: perSecond("REDIS_PERSECOND_PIPELINE_LIMIT", "1"), note: "REDIS_PERSECOND_PIPELINE_LIMIT: extauthz sends"}},
	"REDIS_PERSECOND_USE_EXPLICIT_PIPELINE":         {{over: perSecond("REDIS_PERSECOND_USE_EXPLICIT_PIPELINE", "true"), note: "REDIS_PERSECOND_USE_EXPLICIT_PIPELINE: extauthz sends"}},
	"REDIS_PERSECOND_TIMEOUT":                       {{over: perSecond("REDIS_PERSECOND_TIMEOUT", "1s"), yaml: "timeouts: {dial: 1s, read: 1s, write: 1s} # REDIS_PERSECOND_TIMEOUT"}},
	"REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR":        {{over: perSecond("REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR", "ERROR"), problem: "REDIS_PERSECOND_POOL_ON_EMPTY_BEHAVIOR=ERROR"}},
	"MEMCACHE_HOST_PORT":                            {{over: m("MEMCACHE_HOST_PORT", "mc:1"), note: "MEMCACHE_HOST_PORT: has no effect with BACKEND_TYPE=redis"}},
	"MEMCACHE_MAX_IDLE_CONNS":                       {memRow("MEMCACHE_MAX_IDLE_CONNS")},
	"MEMCACHE_SRV":                                  {memRow("MEMCACHE_SRV")},
	"MEMCACHE_SRV_REFRESH":                          {memRow("MEMCACHE_SRV_REFRESH")},
	"MEMCACHE_TLS":                                  {memRow("MEMCACHE_TLS")},
	"MEMCACHE_TLS_CLIENT_CERT":                      {memRow("MEMCACHE_TLS_CLIENT_CERT")},
	"MEMCACHE_TLS_CLIENT_KEY":                       {memRow("MEMCACHE_TLS_CLIENT_KEY")},
	"MEMCACHE_TLS_CACERT":                           {memRow("MEMCACHE_TLS_CACERT")},
	"MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION":       {memRow("MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION")},
	"TRACING_ENABLED":                               {{over: m("TRACING_ENABLED", "true"), yaml: "tracing: # TRACING_ENABLED=true (the OTLP endpoint from OTEL_EXPORTER_OTLP_* as in the reference) \n  enabled: true \n  protocol: http # TRACING_EXPORTER_PROTOCOL (default http) \n  sampling_ratio: 1 "}, {over: m("TRACING_ENABLED", "true"), yaml: `service_name: "RateLimit"`}},
	"TRACING_SERVICE_NAME":                          {{over: m("TRACING_SERVICE_NAME", "rl"), note: "TRACING_SERVICE_NAME: has no effect without TRACING_ENABLED=true"}, {over: m("TRACING_ENABLED", "1", "TRACING_SERVICE_NAME", "rl"), yaml: `service_name: "rl"`}},
	"TRACING_SERVICE_NAMESPACE":                     {{over: m("TRACING_SERVICE_NAMESPACE", "n"), note: "TRACING_SERVICE_NAMESPACE: has no effect"}, {over: m("TRACING_ENABLED", "1", "TRACING_SERVICE_NAMESPACE", "edge"), yaml: `service_namespace: "edge"`}},
	"TRACING_SERVICE_INSTANCE_ID":                   {{over: m("TRACING_SERVICE_INSTANCE_ID", "i"), note: "TRACING_SERVICE_INSTANCE_ID: has no effect"}, {over: m("TRACING_ENABLED", "1", "TRACING_SERVICE_INSTANCE_ID", "pod-1"), yaml: `service_instance_id: "pod-1"`}},
	"TRACING_EXPORTER_PROTOCOL":                     {{over: m("TRACING_EXPORTER_PROTOCOL", "grpc"), note: "TRACING_EXPORTER_PROTOCOL: has no effect"}, {over: m("TRACING_ENABLED", "1", "TRACING_EXPORTER_PROTOCOL", "gRPC"), yaml: "protocol: grpc "}, {over: m("TRACING_ENABLED", "1", "TRACING_EXPORTER_PROTOCOL", "udp"), problem: "TRACING_EXPORTER_PROTOCOL=udp: use http or grpc"}},
	"TRACING_SAMPLING_RATE":                         {{over: m("TRACING_ENABLED", "true", "TRACING_SAMPLING_RATE", "0.1"), yaml: "sampling_ratio: 0.1 "}, {over: m("TRACING_ENABLED", "true", "TRACING_SAMPLING_RATE", "2"), problem: "TRACING_SAMPLING_RATE=2: not a fraction"}},
}

func m(kv ...string) map[string]string {
	out := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func tlsEnv(kv ...string) map[string]string {
	return m(append([]string{"GRPC_SERVER_USE_TLS", "true", "GRPC_SERVER_TLS_CERT", "/c.pem", "GRPC_SERVER_TLS_KEY", "/k.pem"}, kv...)...)
}

func hdr(kv ...string) map[string]string {
	return m(append([]string{"LIMIT_RESPONSE_HEADERS_ENABLED", "true"}, kv...)...)
}

func perSecond(kv ...string) map[string]string {
	return m(append([]string{"REDIS_PERSECOND", "true", "REDIS_PERSECOND_SOCKET_TYPE", "tcp", "REDIS_PERSECOND_URL", "127.0.0.1:6380"}, kv...)...)
}

func xdsRow(v string) mapping {
	return mapping{over: m(v, "x"), note: v + ": has no effect with CONFIG_TYPE=FILE"}
}

// xdsMap is a row with CONFIG_TYPE=GRPC_XDS_SOTW, v=val (and more
// variables) expecting yaml.
func xdsMap(v, val, yaml string, more ...string) mapping {
	return mapping{over: m(append([]string{"CONFIG_TYPE", "GRPC_XDS_SOTW", v, val}, more...)...), yaml: yaml}
}

func memRow(v string) mapping {
	return mapping{over: m("BACKEND_TYPE", "memcache", v, "x"), problem: "BACKEND_TYPE=memcache, " + v + ": extauthz has no memcache backend"}
}

func TestMapping(t *testing.T) {
	for _, v := range Variables {
		for i, row := range mappings[v] {
			res, err := Generate(with(row.over))
			var e *Error
			switch {
			case row.problem != "":
				if !errors.As(err, &e) || !strings.Contains(err.Error(), row.problem) {
					t.Errorf("%s row %d: got %v, want a problem containing %q", v, i, err, row.problem)
				}
				continue
			case err != nil:
				t.Errorf("%s row %d: %v", v, i, err)
				continue
			}
			// Match whole values: a trailing space stands for the comment's.
			doc := strings.ReplaceAll(strings.ReplaceAll(string(res.YAML), "  #", " #"), "\n", " \n")
			if row.yaml != "" && !strings.Contains(doc, row.yaml) {
				t.Errorf("%s row %d: want %q in\n%s", v, i, row.yaml, res.YAML)
			}
			if row.note != "" && !strings.Contains(strings.Join(res.Notes, "\n"), row.note) {
				t.Errorf("%s row %d: want a note %q, got %q", v, i, row.note, res.Notes)
			}
			checkDoc(t, res.YAML)
		}
	}
}

// TestMappingCovers: every variable has a row, and every row a variable.
func TestMappingCovers(t *testing.T) {
	for _, v := range Variables {
		if len(mappings[v]) == 0 {
			t.Errorf("no TestMapping row for %s", v)
		}
	}
	for v := range mappings {
		found := false
		for _, w := range Variables {
			found = found || v == w
		}
		if !found {
			t.Errorf("TestMapping row for %s, which is not in Variables", v)
		}
	}
}
