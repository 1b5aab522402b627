package redisstore

import (
	"strings"
	"testing"
)

// FuzzKey checks that the Redis key of a request key parses back into it
// (so the layout is injective) and that the hash tag, the first {...} of the
// key whatever braces the request key holds, decides the slot.
func FuzzKey(f *testing.F) {
	for _, k := range []string{"", "f4:edge", "{a}", "}{", "a_b", "{{}}", "\x00{\xff}"} {
		f.Add("extauthz:", k)
	}
	f.Add("", "x")
	f.Fuzz(func(t *testing.T, prefix, k string) {
		if strings.ContainsAny(prefix, "{}") {
			t.Skip()
		}
		if prefix == "" {
			prefix = DefaultPrefix
		}
		full := Key(prefix, k)
		if len(full) != keyLen(prefix, k) {
			t.Fatalf("len(Key) = %d, keyLen = %d", len(full), keyLen(prefix, k))
		}
		rest, ok := strings.CutPrefix(full, prefix+"{")
		if !ok {
			t.Fatalf("Key(%q, %q) = %q lacks the prefix and tag", prefix, k, full)
		}
		tag, back := rest[:tagLen], rest[tagLen+1:]
		if rest[tagLen] != '}' || back != k {
			t.Fatalf("Key(%q, %q) = %q does not parse back", prefix, k, full)
		}
		// Redis Cluster hashes the text between the first '{' and the next '}'.
		open := strings.IndexByte(full, '{')
		end := strings.IndexByte(full[open+1:], '}')
		if full[open+1:open+1+end] != tag {
			t.Fatalf("Key(%q, %q) = %q: Redis would hash %q, not the tag %q", prefix, k, full, full[open+1:open+1+end], tag)
		}
		if got, want := Slot(k), crc16([]byte(tag))%16384; got != want {
			t.Fatalf("Slot(%q) = %d, want %d", k, got, want)
		}
	})
}
