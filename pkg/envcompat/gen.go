package envcompat

import (
	"fmt"
	"math"
	"net"
	"strconv"
	"strings"
	"time"
)

// gen builds the document line by line.
type gen struct {
	env      Getenv
	out      strings.Builder
	problems []Problem
	notes    []string
	secret   bool
	// used are the variables mapped or reported, so that inert can note
	// the rest.
	used map[string]bool
}

// get returns the variable's value, or def when it is unset; it marks the
// variable used.
func (g *gen) get(name, def string) string {
	g.use(name)
	if v := g.env(name); v != "" {
		return v
	}
	return def
}

func (g *gen) set(name string) bool { return g.env(name) != "" }

func (g *gen) use(names ...string) {
	if g.used == nil {
		g.used = map[string]bool{}
	}
	for _, n := range names {
		g.used[n] = true
	}
}

// problem records a variable extauthz cannot honour; vars are names or
// NAME=value texts.
func (g *gen) problem(msg string, vars ...string) {
	g.use(vars...)
	g.problems = append(g.problems, Problem{Vars: vars, Msg: msg})
}

// note records a variable that is set but changes nothing here.
func (g *gen) note(name, why string) {
	g.use(name)
	g.notes = append(g.notes, name+": "+why)
}

// shown is NAME=value, the value quoted when it needs it (never for
// secrets).
func (g *gen) shown(name string) string {
	v := g.env(name)
	if v == "" {
		return name + " (unset)"
	}
	if isPlain(v) {
		return name + "=" + v
	}
	return name + "=" + strconv.Quote(v)
}

// isPlain reports whether v can appear unquoted in a message.
func isPlain(v string) bool {
	if v == "" || len(v) > 200 {
		return false
	}
	for _, r := range v {
		if r <= ' ' || r >= 0x7f || r == '"' || r == '\'' || r == '#' || r == '\\' {
			return false
		}
	}
	return true
}

// boolean parses a variable as the reference does (strconv.ParseBool).
func (g *gen) boolean(name string, def bool) bool {
	v := g.get(name, "")
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		g.problem("not a boolean: use true or false", g.shown(name))
		return def
	}
	return b
}

// integer parses a variable as a decimal integer in [lo, hi].
func (g *gen) integer(name, def string, lo, hi int64) int64 {
	v := g.get(name, def)
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < lo || n > hi {
		g.problem(fmt.Sprintf("not an integer from %d to %d", lo, hi), g.shown(name))
		return lo
	}
	return n
}

// duration parses a variable as a Go duration (e.g. 10s, 1h30m), at
// least 0.
func (g *gen) duration(name, def string) time.Duration {
	v := g.get(name, def)
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		g.problem("not a duration: use a number with a unit, e.g. 500ms, 10s or 24h", g.shown(name))
		return 0
	}
	return d
}

// line writes "key: value  # comment" at indent levels of two spaces; an
// empty value writes "key:" (a section).
func (g *gen) line(indent int, key, value, comment string) {
	g.out.WriteString(strings.Repeat("  ", indent))
	g.out.WriteString(key)
	g.out.WriteString(":")
	if value != "" {
		g.out.WriteString(" ")
		g.out.WriteString(value)
	}
	if comment != "" {
		g.out.WriteString("  # ")
		g.out.WriteString(comment)
	}
	g.out.WriteString("\n")
}

// comment writes a comment line.
func (g *gen) comment(indent int, text string) {
	fmt.Fprintf(&g.out, "%s# %s\n", strings.Repeat("  ", indent), text)
}

// durationText renders d as Go parses it, without zero parts ("24h",
// "1h30m", "500ms").
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// quote renders s as a YAML double-quoted scalar (Go's escapes are YAML's).
func quote(s string) string { return strconv.Quote(s) }

func (g *gen) header() {
	g.comment(0, "extauthz server file generated from envoyproxy/ratelimit environment variables")
	g.comment(0, "(extauthz config from-env). Each setting names the variable it came from; the")
	g.comment(0, "reference's defaults are written out where they differ from extauthz's.")
	g.comment(0, "Review it, save it, and run: extauthz serve --config FILE. See MIGRATING.md.")
}

func (g *gen) footer() {
	if len(g.notes) == 0 {
		return
	}
	g.out.WriteString("\n")
	g.comment(0, "Set, but with no counterpart needed here:")
	for _, n := range g.notes {
		g.comment(0, "  "+n)
	}
}

// listeners maps the listen addresses, gRPC server TLS and connection
// ages.
func (g *gen) listeners() {
	host, port := g.get("HOST", defaultHost), g.integer("PORT", defaultPort, 0, 65535)
	g.line(0, "http_addr", quote(net.JoinHostPort(host, strconv.FormatInt(port, 10))), "HOST, PORT: /json, health and metrics")
	ghost, gport := g.get("GRPC_HOST", defaultHost), g.integer("GRPC_PORT", defaultGRPCPort, 0, 65535)
	g.line(0, "grpc_addr", quote(net.JoinHostPort(ghost, strconv.FormatInt(gport, 10))), "GRPC_HOST, GRPC_PORT")
	if g.set("GRPC_UDS") {
		g.problem("extauthz listens on TCP only: unset it, and point Envoy's rate limit cluster at GRPC_HOST:GRPC_PORT", "GRPC_UDS")
	}
	for _, v := range []string{"DEBUG_HOST", "DEBUG_PORT"} {
		if g.set(v) {
			g.note(v, "extauthz has no separate debug listener; the loaded rules (the reference's /rlconfig) are at http_addr/config and metrics at http_addr/metrics")
		}
	}
	g.line(0, "grpc", "", "")
	g.line(1, "max_connection_age", durationText(g.duration("GRPC_MAX_CONNECTION_AGE", defaultMaxConnAge)), "GRPC_MAX_CONNECTION_AGE (default 24h)")
	g.line(1, "max_connection_age_grace", durationText(g.duration("GRPC_MAX_CONNECTION_AGE_GRACE", defaultMaxConnWait)), "GRPC_MAX_CONNECTION_AGE_GRACE (default 1h)")
	g.serverTLS()
}

func (g *gen) serverTLS() {
	files := []string{"GRPC_SERVER_TLS_CERT", "GRPC_SERVER_TLS_KEY", "GRPC_CLIENT_TLS_CACERT", "GRPC_CLIENT_TLS_SAN"}
	if !g.boolean("GRPC_SERVER_USE_TLS", false) {
		for _, v := range files {
			if g.set(v) {
				g.note(v, "has no effect without GRPC_SERVER_USE_TLS=true (as in the reference)")
			}
		}
		return
	}
	cert, key := g.get("GRPC_SERVER_TLS_CERT", ""), g.get("GRPC_SERVER_TLS_KEY", "")
	if cert == "" || key == "" {
		g.problem("GRPC_SERVER_USE_TLS=true needs both the certificate and the key files: set GRPC_SERVER_TLS_CERT and GRPC_SERVER_TLS_KEY", "GRPC_SERVER_USE_TLS", "GRPC_SERVER_TLS_CERT", "GRPC_SERVER_TLS_KEY")
		return
	}
	g.line(0, "tls", "", "GRPC_SERVER_USE_TLS=true")
	g.line(1, "cert_file", quote(cert), "GRPC_SERVER_TLS_CERT")
	g.line(1, "key_file", quote(key), "GRPC_SERVER_TLS_KEY")
	if ca := g.get("GRPC_CLIENT_TLS_CACERT", ""); ca != "" {
		g.line(1, "client_ca_file", quote(ca), "GRPC_CLIENT_TLS_CACERT: clients must present a certificate it signed")
	}
	if g.set("GRPC_CLIENT_TLS_SAN") {
		g.problem("extauthz accepts any client certificate signed by GRPC_CLIENT_TLS_CACERT and cannot also require a subject alternative name: "+
			"unset it (and give that CA only to the clients that may call), or terminate mTLS in front of extauthz", g.shown("GRPC_CLIENT_TLS_SAN"))
	}
}

// logLevels maps logrus's level names onto extauthz's.
var logLevels = map[string]string{
	"trace": "debug", "debug": "debug", "info": "info", "warn": "warn", "warning": "warn",
	"error": "error", "fatal": "error", "panic": "error",
}

func (g *gen) logging() {
	lv := g.get("LOG_LEVEL", defaultLogLevel)
	level, ok := logLevels[strings.ToLower(lv)]
	if !ok {
		g.problem("not a log level: use debug, info, warn or error (trace, warning, fatal and panic are read as the nearest of these)", g.shown("LOG_LEVEL"))
	}
	format := "text"
	if strings.EqualFold(g.get("LOG_FORMAT", "text"), "json") {
		format = "json"
	}
	g.line(0, "log", "", "")
	g.line(1, "level", level, "LOG_LEVEL (default WARN)")
	g.line(1, "format", format, "LOG_FORMAT: json, anything else text")
}

// behaviour maps what changes answers: near-limit ratio, counting of
// refused requests, headers and the server-wide modes.
func (g *gen) behaviour() {
	if g.set("NEAR_LIMIT_RATIO") {
		r, err := strconv.ParseFloat(g.get("NEAR_LIMIT_RATIO", ""), 32)
		if err != nil || math.IsNaN(r) || r <= 0 || r > 1 {
			g.problem("not a fraction above 0 and at most 1, e.g. 0.8", g.shown("NEAR_LIMIT_RATIO"))
		} else {
			g.line(0, "near_limit_ratio", strconv.FormatFloat(r, 'g', -1, 32), "NEAR_LIMIT_RATIO")
		}
	}
	if g.boolean("STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT", false) {
		g.line(0, "count_mode", "if_all_allowed", "STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT=true: a refused request counts nothing")
	}
	headers := []string{"LIMIT_LIMIT_HEADER", "LIMIT_REMAINING_HEADER", "LIMIT_RESET_HEADER"}
	if g.boolean("LIMIT_RESPONSE_HEADERS_ENABLED", false) {
		g.line(0, "response_headers", "", "LIMIT_RESPONSE_HEADERS_ENABLED=true")
		g.line(1, "enabled", "true", "")
		for i, key := range []string{"limit_header", "remaining_header", "reset_header"} {
			def := []string{defaultLimitHeader, defaultRemHeader, defaultResetHeader}[i]
			g.line(1, key, quote(g.get(headers[i], def)), headers[i]+" (default "+def+")")
		}
	} else {
		for _, v := range headers {
			if g.set(v) {
				g.note(v, "has no effect without LIMIT_RESPONSE_HEADERS_ENABLED=true (as in the reference)")
			}
		}
	}
	for _, m := range []struct{ env, key, why string }{
		{"SHADOW_MODE", "shadow_mode", "every OVER_LIMIT is answered OK (and counted in a metric)"},
		{"QUOTA_MODE", "quota_mode", "the server-wide quota mode"},
		{"RESPONSE_DYNAMIC_METADATA", "response_dynamic_metadata", "descriptor metadata in the response's dynamic_metadata"},
		{"MERGE_DOMAIN_CONFIG", "merge_domain_config", "rule files of one domain are merged"},
	} {
		if g.boolean(m.env, false) {
			g.line(0, m.key, "true", m.env+"=true: "+m.why)
		}
	}
	if g.set("HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED") {
		g.note("HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED", "extauthz does not start without valid rules, so it is never serving without them")
	}
	if g.set("EXPIRATION_JITTER_MAX_SECONDS") {
		g.note("EXPIRATION_JITTER_MAX_SECONDS", "each Redis key expires when its state stops mattering; no jitter is needed")
	}
}
