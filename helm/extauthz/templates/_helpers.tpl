{{/* Chart name, truncated to 63 characters. */}}
{{- define "extauthz.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "extauthz.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "extauthz.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "extauthz.selectorLabels" -}}
app.kubernetes.io/name: {{ include "extauthz.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "extauthz.labels" -}}
helm.sh/chart: {{ include "extauthz.chart" . }}
{{ include "extauthz.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ ternary "envoy-proxy" "rate-limit-service" (eq .Values.mode "sidecar") }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "extauthz.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "extauthz.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "extauthz.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "extauthz.rulesConfigMap" -}}
{{- .Values.rules.existingConfigMap | default (printf "%s-rules" (include "extauthz.fullname" .)) }}
{{- end }}

{{/* Where the pod mounts its files. rules_dir is relative to the config
file's directory so that the same file loads from a copy of this layout. */}}
{{- define "extauthz.configDir" -}}/etc/extauthz/config{{- end }}
{{- define "extauthz.rulesDir" -}}/etc/extauthz/rules{{- end }}
{{- define "extauthz.redisPasswordFile" -}}/etc/extauthz/redis-password/password{{- end }}
{{- define "extauthz.redisTLSDir" -}}/etc/extauthz/redis-tls{{- end }}
{{- define "extauthz.adminTokenFile" -}}/etc/extauthz/admin-token/token{{- end }}

{{/* The redis backend entry of extauthz.yaml. */}}
{{- define "extauthz.redisBackend" -}}
{{- $r := .Values.backend.redis }}
{{- $be := dict "type" "redis" }}
{{- if eq $r.mode "standalone" }}
{{- $_ := set $be "url" $r.url }}
{{- else if eq $r.mode "sentinel" }}
{{- $_ := set $be "sentinel" (dict "master_name" $r.sentinel.masterName "addrs" $r.sentinel.addrs) }}
{{- else if eq $r.mode "cluster" }}
{{- $_ := set $be "cluster" (dict "addrs" $r.cluster.addrs) }}
{{- end }}
{{- if $r.password.existingSecret }}
{{- $_ := set $be "password_file" (include "extauthz.redisPasswordFile" .) }}
{{- end }}
{{- if $r.tls.enabled }}
{{- $tls := dict "enabled" true }}
{{- if $r.tls.existingSecret }}
{{- $_ := set $tls "ca_file" (printf "%s/ca.crt" (include "extauthz.redisTLSDir" .)) }}
{{- if $r.tls.clientCertificate }}
{{- $_ := set $tls "cert_file" (printf "%s/tls.crt" (include "extauthz.redisTLSDir" .)) }}
{{- $_ := set $tls "key_file" (printf "%s/tls.key" (include "extauthz.redisTLSDir" .)) }}
{{- end }}
{{- end }}
{{- with $r.tls.serverName }}
{{- $_ := set $tls "server_name" . }}
{{- end }}
{{- if $r.tls.insecureSkipVerify }}
{{- $_ := set $tls "insecure_skip_verify" true }}
{{- end }}
{{- $_ := set $be "tls" $tls }}
{{- end }}
{{- toYaml (merge $be (deepCopy $r.extra)) }}
{{- end }}

{{/* extauthz.yaml */}}
{{- define "extauthz.config" -}}
{{- $c := deepCopy .Values.config }}
{{- $grpcHost := ternary "127.0.0.1" "0.0.0.0" (eq .Values.mode "sidecar") }}
{{- $_ := set $c "grpc_addr" (printf "%s:%d" $grpcHost (int .Values.ports.grpc)) }}
{{- $_ := set $c "http_addr" (printf "0.0.0.0:%d" (int .Values.ports.http)) }}
{{- if eq .Values.backend.type "redis" }}
{{- $_ := set $c "backends" (list (fromYaml (include "extauthz.redisBackend" .))) }}
{{- else }}
{{- $_ := set $c "backends" (list (dict "type" "memory" "max_keys" (int64 .Values.backend.memory.maxKeys))) }}
{{- end }}
{{- if not $c.rules_xds }}
{{- $_ := set $c "rules_dir" "../rules" }}
{{- end }}
{{- with .Values.admin }}
{{- if or .token.existingSecret .protectMetrics }}
{{- $admin := deepCopy (default dict $c.admin) }}
{{- if .token.existingSecret }}
{{- $_ := set $admin "auth" (merge (dict "token_file" (include "extauthz.adminTokenFile" $)) (default dict $admin.auth)) }}
{{- end }}
{{- if .protectMetrics }}
{{- $_ := set $admin "protect_metrics" true }}
{{- end }}
{{- $_ := set $c "admin" $admin }}
{{- end }}
{{- end }}
{{- toYaml $c }}
{{- end }}
