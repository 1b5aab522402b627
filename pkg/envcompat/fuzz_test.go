package envcompat

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzGenerate: any environment (lines of NAME=value; values may hold
// anything but a newline) gives either a document that parses with only
// the expected top-level keys, or an *Error naming at least one problem;
// never a panic, and the same answer twice.
func FuzzGenerate(f *testing.F) {
	for _, seed := range []string{
		"",
		"REDIS_SOCKET_TYPE=tcp\nREDIS_URL=127.0.0.1:6379\nUSE_STATSD=false\nRUNTIME_ROOT=/data\nRUNTIME_SUBDIRECTORY=ratelimit",
		"REDIS_TYPE=SENTINEL\nREDIS_URL=m,a:1,b:2\nREDIS_AUTH=u:p\nREDIS_SENTINEL_AUTH=s",
		"REDIS_PERSECOND=true\nREDIS_PERSECOND_TYPE=CLUSTER\nREDIS_PERSECOND_URL=a:1,b:2\nLOCAL_CACHE_SIZE_IN_BYTES=99999999999",
		"HOST=::1\nPORT=0\nGRPC_PORT=65535\nLOG_LEVEL=Panic\nLOG_FORMAT=json\nNEAR_LIMIT_RATIO=1e-45",
		"GRPC_SERVER_USE_TLS=1\nGRPC_SERVER_TLS_CERT=a\"b\nGRPC_SERVER_TLS_KEY=#k\nGRPC_CLIENT_TLS_CACERT=\\x00",
		"CONFIG_TYPE=grpc_xds_sotw\nBACKEND_TYPE=memcache\nUSE_STATSD=true\nTRACING_ENABLED=t",
		"GRPC_MAX_CONNECTION_AGE=-1s\nREDIS_TIMEOUT=9223372036854775807ns\nREDIS_POOL_SIZE=99999999999999999999",
		"LIMIT_RESPONSE_HEADERS_ENABLED=T\nLIMIT_LIMIT_HEADER=x: y\nCACHE_KEY_PREFIX={a}\nRUNTIME_APPDIRECTORY=../..",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data string) {
		env := map[string]string{}
		for _, line := range strings.Split(data, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
		getenv := func(k string) string { return env[k] }
		res, err := Generate(getenv)
		res2, err2 := Generate(getenv)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Problems) == 0 {
				t.Fatalf("error %v is not an *Error with problems", err)
			}
			if err2 == nil || err.Error() != err2.Error() {
				t.Fatalf("two runs differ: %v / %v", err, err2)
			}
			return
		}
		if err2 != nil || !bytes.Equal(res.YAML, res2.YAML) {
			t.Fatalf("two runs differ")
		}
		checkDoc(t, res.YAML)
	})
}
