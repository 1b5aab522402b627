{{/* The sidecar mode's Envoy bootstrap, generated from .Values.envoy. */}}
{{- define "extauthz.envoyConfig" -}}
{{- $e := .Values.envoy -}}
admin:
  address:
    socket_address: {address: 127.0.0.1, port_value: 9901}
static_resources:
  listeners:
    - name: ingress
      address:
        socket_address: {address: 0.0.0.0, port_value: {{ int $e.ports.http }}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
                use_remote_address: {{ $e.useRemoteAddress }}
                xff_num_trusted_hops: {{ int $e.xffNumTrustedHops }}
                access_log:
                  - name: envoy.access_loggers.stdout
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                route_config:
                  name: ingress
                  virtual_hosts:
                    - name: upstream
                      domains: ["*"]
                      {{- with $e.rateLimits }}
                      rate_limits:
                        {{- toYaml . | nindent 24 }}
                      {{- end }}
                      routes:
                        - name: upstream
                          match: {prefix: /}
                          route:
                            cluster: upstream
                            timeout: {{ $e.upstream.timeout }}
                http_filters:
                  - name: envoy.filters.http.ratelimit
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ratelimit.v3.RateLimit
                      domain: {{ $e.domain | quote }}
                      failure_mode_deny: {{ $e.failureModeDeny }}
                      timeout: {{ $e.timeout }}
                      enable_x_ratelimit_headers: {{ $e.xRateLimitHeaders }}
                      enable_retry_after_header: {{ $e.retryAfterHeader }}
                      rate_limit_service:
                        transport_api_version: V3
                        grpc_service:
                          envoy_grpc:
                            cluster_name: extauthz
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
    # Kubelet probes and Prometheus reach these two admin paths; the rest of
    # the admin interface stays on 127.0.0.1.
    - name: admin
      address:
        socket_address: {address: 0.0.0.0, port_value: {{ int $e.ports.admin }}}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: admin
                route_config:
                  name: admin
                  virtual_hosts:
                    - name: admin
                      domains: ["*"]
                      routes:
                        - match: {path: /ready}
                          route: {cluster: envoy_admin}
                        - match: {path: /stats/prometheus}
                          route: {cluster: envoy_admin}
                http_filters:
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: extauthz
      type: STATIC
      connect_timeout: 0.25s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {}
      load_assignment:
        cluster_name: extauthz
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: 127.0.0.1, port_value: {{ int .Values.ports.grpc }}}
    - name: upstream
      type: STRICT_DNS
      connect_timeout: {{ $e.upstream.connectTimeout }}
      load_assignment:
        cluster_name: upstream
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: {{ required "envoy.upstream.address is required in sidecar mode" $e.upstream.address | quote }}, port_value: {{ int $e.upstream.port }}}
    - name: envoy_admin
      type: STATIC
      connect_timeout: 0.25s
      load_assignment:
        cluster_name: envoy_admin
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: 127.0.0.1, port_value: 9901}
{{- end }}
