package envcompat

import (
	"fmt"
	"net"
	neturl "net/url"
	"strconv"
	"strings"
)

// redisVars are the variable names of one Redis (the main one, or the
// per-second one of REDIS_PERSECOND).
type redisVars struct {
	prefix                                    string // REDIS or REDIS_PERSECOND
	name                                      string // backend name
	defaultURL                                string
	tls                                       string
	socket, typ, url, pool, auth, sentinel    string
	timeout, onEmpty, window, limit, explicit string
}

func redisNames(prefix, name, defaultURL string) redisVars {
	return redisVars{
		prefix: prefix, name: name, defaultURL: defaultURL,
		tls: prefix + "_TLS", socket: prefix + "_SOCKET_TYPE", typ: prefix + "_TYPE", url: prefix + "_URL",
		pool: prefix + "_POOL_SIZE", auth: prefix + "_AUTH", sentinel: prefix + "_SENTINEL_AUTH",
		timeout: prefix + "_TIMEOUT", onEmpty: prefix + "_POOL_ON_EMPTY_BEHAVIOR",
		window: prefix + "_PIPELINE_WINDOW", limit: prefix + "_PIPELINE_LIMIT", explicit: prefix + "_USE_EXPLICIT_PIPELINE",
	}
}

// backends maps BACKEND_TYPE and the Redis variables onto the default
// chain, and REDIS_PERSECOND onto a second chain for second limits.
func (g *gen) backends() {
	bt := g.get("BACKEND_TYPE", "redis")
	switch strings.ToLower(bt) {
	case "redis":
	case "memcache":
		g.problem("extauthz has no memcache backend: use Redis (BACKEND_TYPE=redis with REDIS_SOCKET_TYPE=tcp and REDIS_URL), or write a server file with another backend (memory, redis, postgres)",
			append([]string{"BACKEND_TYPE=memcache"}, g.setOf(memcacheVars)...)...)
		return
	default:
		g.problem("unknown backend: use redis", g.shown("BACKEND_TYPE"))
		return
	}
	for _, v := range memcacheVars {
		if g.set(v) {
			g.note(v, "has no effect with BACKEND_TYPE=redis (as in the reference)")
		}
	}
	g.readiness()
	g.line(0, "backends", "", "BACKEND_TYPE=redis: Redis only, no fallback, as the reference")
	g.redis(redisNames("REDIS", "redis", defaultRedisURL), 1)
	main := redisNames("REDIS_PERSECOND", "redis-persecond", defaultPerSecURL)
	if !g.boolean("REDIS_PERSECOND", false) {
		for _, v := range main.all() {
			if g.set(v) {
				g.note(v, "has no effect without REDIS_PERSECOND=true (as in the reference)")
			}
		}
		return
	}
	g.line(0, "chains", "", "REDIS_PERSECOND=true: limits of unit second are counted in a second Redis")
	g.line(1, "persecond", "", "")
	g.redis(main, 2)
	g.line(0, "chains_by_unit", "{second: persecond}", "REDIS_PERSECOND=true")
}

// readiness maps REDIS_HEALTH_CHECK_ACTIVE_CONNECTION: the reference's
// health check looks at Redis only when it is set, so readiness (and
// /healthcheck) follow Redis only then.
func (g *gen) readiness() {
	if g.boolean("REDIS_HEALTH_CHECK_ACTIVE_CONNECTION", false) {
		g.line(0, "readiness", "any", "REDIS_HEALTH_CHECK_ACTIVE_CONNECTION=true: /healthcheck and /readyz fail while Redis is unusable")
		return
	}
	g.line(0, "readiness", "always", "REDIS_HEALTH_CHECK_ACTIVE_CONNECTION unset: /healthcheck does not depend on Redis, as in the reference")
}

func (v redisVars) all() []string {
	return []string{v.socket, v.typ, v.url, v.pool, v.auth, v.sentinel, v.tls, v.timeout, v.onEmpty, v.window, v.limit, v.explicit}
}

var memcacheVars = []string{"MEMCACHE_HOST_PORT", "MEMCACHE_MAX_IDLE_CONNS", "MEMCACHE_SRV", "MEMCACHE_SRV_REFRESH",
	"MEMCACHE_TLS", "MEMCACHE_TLS_CLIENT_CERT", "MEMCACHE_TLS_CLIENT_KEY", "MEMCACHE_TLS_CACERT", "MEMCACHE_TLS_SKIP_HOSTNAME_VERIFICATION"}

// setOf returns the names in vars that are set.
func (g *gen) setOf(vars []string) []string {
	var out []string
	for _, v := range vars {
		if g.set(v) {
			out = append(out, v)
		}
	}
	return out
}

// redis writes one Redis backend entry (a list item at indent).
func (g *gen) redis(v redisVars, indent int) {
	g.out.WriteString(strings.Repeat("  ", indent) + "- type: redis\n")
	in := indent + 1
	g.line(in, "name", v.name, "")
	cred := g.redisAddress(v, in)
	g.redisAuth(v, in, cred)
	g.redisTLS(v, in)
	g.line(in, "pool", "", "")
	g.line(in+1, "size", strconv.FormatInt(g.integer(v.pool, defaultPoolSize, 1, 1<<20), 10), v.pool+" (default 10)")
	if g.set(v.timeout) {
		d := g.duration(v.timeout, "")
		if d == 0 {
			g.problem("must be above 0", g.shown(v.timeout))
		}
		g.line(in, "timeouts", fmt.Sprintf("{dial: %s, read: %s, write: %s}", durationText(d), durationText(d), durationText(d)), v.timeout+" (unset: extauthz's sidecar defaults, 250ms dial, 100ms read and write)")
		g.line(in, "call_timeout", durationText(d), v.timeout+" (unset: breaker.call_timeout, 10ms)")
	}
	if b := g.get(v.onEmpty, "WAIT"); !strings.EqualFold(b, "WAIT") {
		g.problem("only WAIT is supported (as in the reference since radix v4): a call waits up to pool.timeout for a free connection; unset it", g.shown(v.onEmpty))
	}
	for _, p := range []string{v.window, v.limit, v.explicit} {
		if g.set(p) {
			g.note(p, "extauthz sends each request's descriptors in one script call and batches concurrent calls itself (auto_pipeline, default on outside Cluster); no window to tune")
		}
	}
	if prefix := g.get("CACHE_KEY_PREFIX", ""); prefix != "" {
		g.line(in, "prefix", quote(prefix), "CACHE_KEY_PREFIX")
	}
	if g.set("LOCAL_CACHE_SIZE_IN_BYTES") {
		n := g.integer("LOCAL_CACHE_SIZE_IN_BYTES", "0", 0, 1<<40)
		if n > 0 {
			keys := max(1, n/bytesPerCacheKey)
			g.line(in, "local_cache", fmt.Sprintf("{enabled: true, max_keys: %d}", keys), fmt.Sprintf("LOCAL_CACHE_SIZE_IN_BYTES / %d bytes per over-limit key", bytesPerCacheKey))
		}
	}
}

// redisAddress maps the socket type, Redis type and URL; it returns the
// credentials of URL-form Sentinel or Cluster entries (nil: none).
func (g *gen) redisAddress(v redisVars, in int) (cred *neturl.Userinfo) {
	url := g.get(v.url, v.defaultURL)
	socket := strings.ToLower(g.get(v.socket, "unix"))
	switch typ := strings.ToUpper(g.get(v.typ, "SINGLE")); typ {
	case "SINGLE":
		if isURL(url) {
			// The reference's client also takes redis://[user:password@]host:port[/db].
			if !validURL(url) {
				g.problem("expected host:port or redis://[user:password@]host:port[/db] for REDIS_TYPE=SINGLE", g.shown(v.url))
				return
			}
			if strings.Contains(url, "@") {
				g.secret = true
			}
			g.line(in, "url", quote(url), fmt.Sprintf("%s=SINGLE, %s", v.typ, v.url))
			return
		}
		if socket != "tcp" {
			g.unixSocket(v, in, socket, url)
			return
		}
		if !hostPort(url) {
			g.problem("expected host:port or redis://[user:password@]host:port[/db] for REDIS_TYPE=SINGLE", g.shown(v.url))
			return
		}
		g.line(in, "url", quote("redis://"+url), fmt.Sprintf("%s=tcp, %s=SINGLE, %s", v.socket, v.typ, v.url))
	case "SENTINEL":
		parts := strings.Split(url, ",")
		if len(parts) >= 2 {
			var addrs []string
			addrs, cred = g.nodeAddrs(v, parts[1:])
			parts = append(parts[:1:1], addrs...)
		}
		if len(parts) < 2 || parts[0] == "" || !allHostPort(parts[1:]) {
			g.problem("expected master_name,host:port[,host:port...] for SENTINEL (the master's name, then the sentinels)", g.shown(v.url))
			return
		}
		g.line(in, "sentinel", "", fmt.Sprintf("%s=SENTINEL, %s: master name, then the sentinels", v.typ, v.url))
		g.line(in+1, "master_name", quote(parts[0]), "")
		g.line(in+1, "addrs", flowList(parts[1:]), "")
		if g.set(v.sentinel) {
			g.secret = true
			g.line(in+1, "password", quote(g.get(v.sentinel, "")), v.sentinel+" (a secret: move it out of this file)")
		}
	case "CLUSTER":
		var parts []string
		parts, cred = g.nodeAddrs(v, strings.Split(url, ","))
		if !allHostPort(parts) {
			g.problem("expected host:port[,host:port...] for CLUSTER", g.shown(v.url))
			return
		}
		g.line(in, "cluster", "", v.typ+"=CLUSTER")
		g.line(in+1, "addrs", flowList(parts), v.url)
	default:
		g.problem("unknown Redis type: use SINGLE, SENTINEL or CLUSTER", g.shown(v.typ))
	}
	return cred
}

// unixSocket maps a SINGLE Redis behind a unix socket (the reference's
// default socket type): REDIS_URL is the socket's path.
func (g *gen) unixSocket(v redisVars, in int, socket, path string) {
	switch {
	case socket != "unix":
		g.problem("unknown socket type: use tcp or unix", v.socket+"="+socket)
	case !strings.HasPrefix(path, "/"):
		g.problem(fmt.Sprintf("with a unix socket (%s unset or unix) %s is the socket's absolute path: set %s=tcp for host:port, or %s=/path/to/redis.sock", v.socket, v.url, v.socket, v.url),
			v.socket+"="+socket, g.shown(v.url))
	case g.boolean(v.tls, false):
		g.problem(fmt.Sprintf("TLS is not available over a unix socket: unset %s, or connect over TCP (%s=tcp)", v.tls, v.socket), v.tls+"=true", v.socket+"="+socket)
	default:
		g.line(in, "url", quote("unix://"+path), fmt.Sprintf("%s=unix, %s=SINGLE, %s (the socket's path)", v.socket, v.typ, v.url))
	}
}

// redisAuth maps REDIS_AUTH: a password stays in the environment
// (password_env); user:password needs the user here, and so the password.
// Without REDIS_AUTH, the credentials of URL-form node entries apply.
func (g *gen) redisAuth(v redisVars, in int, cred *neturl.Userinfo) {
	auth := g.get(v.auth, "")
	if auth == "" && cred != nil {
		pass, _ := cred.Password()
		g.secret = true
		g.line(in, "username", quote(cred.Username()), v.url+" (the nodes' redis://user:password@)")
		g.line(in, "password", quote(pass), v.url+" (a secret: move it to password_file or password_env)")
		return
	}
	if auth == "" {
		return
	}
	user, pass, ok := strings.Cut(auth, ":")
	if !ok {
		g.line(in, "password_env", v.auth, v.auth+": read from the environment at start")
		return
	}
	g.secret = true
	g.line(in, "username", quote(user), v.auth+" (user:password)")
	g.line(in, "password", quote(pass), v.auth+" (a secret: move it to password_file or password_env)")
}

// redisTLS maps REDIS_TLS (or REDIS_PERSECOND_TLS) and the shared client
// files.
func (g *gen) redisTLS(v redisVars, in int) {
	files := []string{"REDIS_TLS_CLIENT_CERT", "REDIS_TLS_CLIENT_KEY", "REDIS_TLS_CACERT", "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION"}
	if !g.boolean(v.tls, false) {
		return // the files are noted by inert when no Redis uses TLS
	}
	g.line(in, "tls", "", v.tls+"=true")
	g.line(in+1, "enabled", "true", "")
	for i, key := range []string{"cert_file", "key_file", "ca_file"} {
		if f := g.get(files[i], ""); f != "" {
			g.line(in+1, key, quote(f), files[i])
		}
	}
	if g.boolean("REDIS_TLS_SKIP_HOSTNAME_VERIFICATION", false) {
		g.problem("extauthz always verifies Redis's certificate chain and host name; it cannot skip only the host name: "+
			"unset it and write the name the certificate carries as tls.server_name in a server file", "REDIS_TLS_SKIP_HOSTNAME_VERIFICATION=true")
	}
}

// isURL reports whether a REDIS_URL entry is a redis:// or rediss:// URL
// rather than host:port.
func isURL(s string) bool {
	return strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://")
}

func validURL(s string) bool {
	u, err := neturl.Parse(s)
	return err == nil && hostPort(u.Host) && u.RawQuery == "" && u.Fragment == ""
}

// nodeAddrs returns the host:port of each Sentinel or Cluster entry,
// entries written as redis://[user:password@]host:port reduced to their
// address, and the first credentials found in them (nil: none). rediss://
// entries are a problem (TLS is REDIS_TLS there).
func (g *gen) nodeAddrs(v redisVars, entries []string) (addrs []string, cred *neturl.Userinfo) {
	addrs = make([]string, 0, len(entries))
	for _, e := range entries {
		if !isURL(e) {
			addrs = append(addrs, e)
			continue
		}
		u, err := neturl.Parse(e)
		if err != nil || strings.HasPrefix(e, "rediss://") {
			g.problem("write each node as host:port or redis://[user:password@]host:port; for TLS set "+v.tls+"=true", g.shown(v.url))
			return nil, nil
		}
		addrs = append(addrs, u.Host)
		if cred == nil {
			cred = u.User
		}
	}
	return addrs, cred
}

func hostPort(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" || strings.ContainsAny(host, "/@ ") {
		return false
	}
	n, err := strconv.ParseUint(port, 10, 16)
	return err == nil && n > 0
}

func allHostPort(addrs []string) bool {
	if len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if !hostPort(a) {
			return false
		}
	}
	return true
}

func flowList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
