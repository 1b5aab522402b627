package descriptor

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// keySet has one rule of each level kind, at two depths.
func keySet(t testing.TB) *Set {
	return mustSet(t, Domain{Name: "dom", Descriptors: []Node{
		{Key: "k", RateLimit: perMinute(1), Descriptors: []Node{
			{Key: "k2", RateLimit: perMinute(1)},
			{Key: "p2", Value: "x*", RateLimit: perMinute(1)},
		}},
		{Key: "k", Value: "exact", RateLimit: perMinute(1)},
		{Key: "p", Value: "/api/*", RateLimit: perMinute(1)},
		{Key: "s", Value: "/files/*", ShareThreshold: true, RateLimit: perMinute(1)},
		{Key: "s", Value: "/dirs/*", ShareThreshold: true, Descriptors: []Node{
			{Key: "user", RateLimit: &RateLimit{Unit: UnitSecond, RequestsPerUnit: 1, Algorithm: limiter.TokenBucket}},
		}},
		{Key: "a_b", RateLimit: perMinute(1)},
		{Key: "a", Value: "b_c", RateLimit: perMinute(1)},
		{Key: "a", RateLimit: perMinute(1), Descriptors: []Node{{Key: "b_c", RateLimit: perMinute(1)}}},
	}})
}

func key(t testing.TB, s *Set, d Descriptor) string {
	t.Helper()
	r, ok := s.Match("dom", d)
	if !ok {
		t.Fatalf("no rule matches %s", d)
	}
	return string(AppendKey(nil, r, d))
}

func TestAppendKey(t *testing.T) {
	s := keySet(t)
	long := strings.Repeat("v", MaxRawField+1)
	sum := sha256.Sum256([]byte(long))
	longHash := "#" + hex.EncodeToString(sum[:16])
	tests := []struct {
		name string
		d    Descriptor
		want string
	}{
		{name: "key only counts the value", d: desc("k", "1.2.3.4"), want: "f3:dom1:kk7:1.2.3.4"},
		{name: "exact", d: desc("k", "exact"), want: "f3:dom1:ke5:exact"},
		{name: "pattern counts the value", d: desc("p", "/api/users"), want: "f3:dom1:pp6:/api/*10:/api/users"},
		{name: "share_threshold counts the pattern", d: desc("s", "/files/a.pdf"), want: "f3:dom1:ss8:/files/*"},
		{name: "nested share_threshold", d: desc("s", "/dirs/x", "user", "u1"), want: "t3:dom1:ss7:/dirs/*4:userk2:u1"},
		{name: "nested key only", d: desc("k", "a", "k2", "b"), want: "f3:dom1:kk1:a2:k2k1:b"},
		{name: "nested pattern", d: desc("k", "a", "p2", "xy"), want: "f3:dom1:kk1:a2:p2p2:x*2:xy"},
		{name: "empty value", d: desc("k", ""), want: "f3:dom1:kk0:"},
		{name: "value with separators", d: desc("k", "1:a3:b"), want: "f3:dom1:kk6:1:a3:b"},
		{name: "long value hashed", d: desc("k", long), want: "f3:dom1:kk" + longHash},
		{name: "64 bytes kept", d: desc("k", long[:MaxRawField]), want: "f3:dom1:kk64:" + long[:MaxRawField]},
		{name: "a_b + c", d: desc("a_b", "c"), want: "f3:dom3:a_bk1:c"},
		{name: "a + b_c", d: desc("a", "b_c"), want: "f3:dom1:ae3:b_c"},
		{name: "a + b_c nested", d: desc("a", "b", "b_c", "c"), want: "f3:dom1:ak1:b3:b_ck1:c"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := key(t, s, tc.d); got != tc.want {
				t.Errorf("AppendKey(%s) = %q, want %q", tc.d, got, tc.want)
			}
		})
	}
}

func TestAppendKeyCounters(t *testing.T) {
	s := keySet(t)
	same := func(a, b Descriptor) bool { return key(t, s, a) == key(t, s, b) }
	if same(desc("k", "1"), desc("k", "2")) {
		t.Error("key-only values share a counter, want one counter per value")
	}
	if same(desc("p", "/api/a"), desc("p", "/api/b")) {
		t.Error("pattern values share a counter, want one counter per value")
	}
	if !same(desc("s", "/files/a"), desc("s", "/files/b")) {
		t.Error("share_threshold values have separate counters, want one shared counter")
	}
	if same(desc("s", "/dirs/a", "user", "1"), desc("s", "/dirs/a", "user", "2")) {
		t.Error("users under a shared pattern share a counter, want one per user")
	}
	if !same(desc("s", "/dirs/a", "user", "1"), desc("s", "/dirs/b", "user", "1")) {
		t.Error("one user under different values of a shared pattern has separate counters, want one")
	}
	// A reload that keeps the rule keeps its counters.
	r1, _ := s.Match("dom", desc("k", "1"))
	r2, _ := keySet(t).Match("dom", desc("k", "1"))
	if a, b := AppendKey(nil, r1, desc("k", "1")), AppendKey(nil, r2, desc("k", "1")); !bytes.Equal(a, b) {
		t.Errorf("key changed across rebuilds: %q then %q", a, b)
	}
	// The algorithm is part of the key: state of one algorithm is never read
	// as another's.
	sw := mustSet(t, Domain{Name: "dom", Descriptors: []Node{{Key: "k", RateLimit: &RateLimit{Unit: UnitMinute, RequestsPerUnit: 1, Algorithm: limiter.SlidingWindow}}}})
	r3, _ := sw.Match("dom", desc("k", "1"))
	if a, b := AppendKey(nil, r1, desc("k", "1")), AppendKey(nil, r3, desc("k", "1")); bytes.Equal(a, b) {
		t.Errorf("fixed and sliding window rules share key %q", a)
	}
}

func TestAppendKeyAllocs(t *testing.T) {
	s := keySet(t)
	long := strings.Repeat("x", 300)
	buf := make([]byte, 0, 512)
	for _, d := range []Descriptor{desc("k", "1.2.3.4"), desc("p", "/api/"+long), desc("k", "a", "p2", "x"+long)} {
		r, _ := s.Match("dom", d)
		if allocs := testing.AllocsPerRun(100, func() { buf = AppendKey(buf[:0], r, d) }); allocs != 0 {
			t.Errorf("AppendKey(%.40s) allocates %v times, want 0", d, allocs)
		}
	}
}

// keyToken is one decoded token of a key: a kind or algorithm byte, or a field.
type keyToken struct {
	kind  byte   // 0 for a field
	field string // raw string, or "#" + hex hash
}

// parseKey decodes a key back into its tokens following the grammar in
// key.go. Because it is a function of the key alone, and it returns the
// tokens AppendKey was given (checked by the fuzz test), equal keys imply
// equal inputs: the encoding is injective.
func parseKey(key string) ([]keyToken, error) {
	var toks []keyToken
	field := func() error {
		if key == "" {
			return fmt.Errorf("missing field")
		}
		if key[0] == '#' {
			if len(key) < 33 {
				return fmt.Errorf("short hash")
			}
			toks = append(toks, keyToken{field: key[:33]})
			key = key[33:]
			return nil
		}
		colon := strings.IndexByte(key, ':')
		if colon < 1 {
			return fmt.Errorf("no length in %q", key)
		}
		n, err := strconv.Atoi(key[:colon])
		if err != nil || n > MaxRawField || colon+1+n > len(key) {
			return fmt.Errorf("bad length in %q", key)
		}
		toks = append(toks, keyToken{field: key[colon+1 : colon+1+n]})
		key = key[colon+1+n:]
		return nil
	}
	if key == "" {
		return nil, fmt.Errorf("empty key")
	}
	toks = append(toks, keyToken{kind: key[0]})
	key = key[1:]
	if err := field(); err != nil {
		return nil, err
	}
	// period parses AppendCounterKey's optional suffix, which ends the key.
	period := func() ([]keyToken, error) {
		if key == "" {
			return toks, nil
		}
		n, err := strconv.ParseInt(key[1:], 10, 64)
		if err != nil || n <= 0 || strconv.FormatInt(n, 10) != key[1:] {
			return nil, fmt.Errorf("bad period in %q", key)
		}
		return append(toks, keyToken{kind: keyPeriod}, keyToken{field: key[1:]}), nil
	}
	if key != "" && key[0] == keyOverride {
		toks = append(toks, keyToken{kind: keyOverride})
		key = key[1:]
		for key != "" && key[0] != keyPeriod {
			if err := field(); err != nil {
				return nil, err
			}
			if err := field(); err != nil {
				return nil, err
			}
		}
		return period()
	}
	for key != "" && key[0] != keyPeriod {
		if err := field(); err != nil {
			return nil, err
		}
		if key == "" {
			return nil, fmt.Errorf("missing kind")
		}
		k := key[0]
		toks = append(toks, keyToken{kind: k})
		key = key[1:]
		n := 1
		switch matchKind(k) {
		case matchPattern:
			n = 2
		case matchExact, matchKeyOnly, matchShared:
		default:
			return nil, fmt.Errorf("bad kind %q", k)
		}
		for range n {
			if err := field(); err != nil {
				return nil, err
			}
		}
	}
	return period()
}

// canon is what a key must decode to: long strings become their hash.
func canon(s string) keyToken {
	if len(s) <= MaxRawField {
		return keyToken{field: s}
	}
	sum := sha256.Sum256([]byte(s))
	return keyToken{field: "#" + hex.EncodeToString(sum[:16])}
}

func tokensEqual(a, b []keyToken) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzAppendKey checks that keys decode to exactly the tokens of their input
// (so the encoding is injective), and that two different inputs never share
// a key, for override rules with arbitrary keys and values and for tree
// rules of every level kind.
func FuzzAppendKey(f *testing.F) {
	f.Add("a_b", "c", "a", "b_c", "v1", "v2")
	f.Add("a", "b_c", "a_b", "c", "1:a", "")
	f.Add("1:a", "2:bb", "1", ":a2:bb", "#", "o")
	f.Add("k", strings.Repeat("z", 65), "k", strings.Repeat("z", 64), "x*", "x")
	f.Add("", "", "o", "e", "k", "p")
	s := keySet(f)
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, w1, w2 string) {
		over, ok := s.Override("dom", UnitSecond, 5)
		if !ok {
			t.Fatal("no override")
		}
		type input struct {
			r    *Rule
			d    Descriptor
			want []keyToken
		}
		base := []keyToken{{kind: 'f'}, {field: "dom"}}
		overTokens := func(d Descriptor) []keyToken {
			toks := append(append([]keyToken(nil), base...), keyToken{kind: keyOverride})
			for _, e := range d {
				toks = append(toks, canon(e.Key), canon(e.Value))
			}
			return toks
		}
		var inputs []input
		for _, d := range []Descriptor{desc(k1, v1), desc(k2, v2), desc(k1, v1, k2, v2), desc(k2, v2, k1, v1), desc(k1+v1, ""), {}} {
			inputs = append(inputs, input{r: &over, d: d, want: overTokens(d)})
		}
		tree := func(d Descriptor, want ...keyToken) {
			r, ok := s.Match("dom", d)
			if !ok {
				return // w1/w2 did not fit the rule's pattern
			}
			inputs = append(inputs, input{r: r, d: d, want: append(append([]keyToken(nil), base...), want...)})
		}
		for _, w := range []string{w1, w2} {
			tree(desc("k", w), keyToken{field: "k"}, keyToken{kind: 'k'}, canon(w))
			tree(desc("k", "a", "k2", w), keyToken{field: "k"}, keyToken{kind: 'k'}, canon("a"), keyToken{field: "k2"}, keyToken{kind: 'k'}, canon(w))
			tree(desc("k", w, "p2", "x"+w), keyToken{field: "k"}, keyToken{kind: 'k'}, canon(w), keyToken{field: "p2"}, keyToken{kind: 'p'}, canon("x*"), canon("x"+w))
			tree(desc("p", "/api/"+w), keyToken{field: "p"}, keyToken{kind: 'p'}, canon("/api/*"), canon("/api/"+w))
		}
		keys := make(map[string]int)
		for i, in := range inputs {
			k := string(AppendKey(nil, in.r, in.d))
			got, err := parseKey(k)
			if err != nil {
				t.Fatalf("parseKey(%q) for %s: %v", k, in.d, err)
			}
			if !tokensEqual(got, in.want) {
				t.Fatalf("key %q of %s decodes to %v, want %v", k, in.d, got, in.want)
			}
			if j, dup := keys[k]; dup && !tokensEqual(inputs[j].want, in.want) {
				t.Fatalf("%s and %s share key %q", inputs[j].d, in.d, k)
			}
			keys[k] = i
		}
	})
}

// TestAppendCounterKey: the effective limit's period joins the key when it
// can differ between requests of one counter (an Envoy override, a tier or
// identity override of another unit), and only then; the key still parses
// back to its inputs, and it does not allocate.
func TestAppendCounterKey(t *testing.T) {
	s := keySet(t)
	d := desc("k", "1.2.3.4")
	r, _ := s.Match("dom", d)
	plain := string(AppendKey(nil, r, d))
	hour := limiter.Limit{Requests: 3, Period: time.Hour}
	over, _ := s.Override("dom", UnitSecond, 5)
	tests := []struct {
		name   string
		tenant string
		r      *Rule
		l      limiter.Limit
		want   string
	}{
		{name: "rule's own limit: unchanged", r: r, l: r.Limit, want: plain},
		{name: "same period, other requests: shared", r: r, l: limiter.Limit{Requests: 9, Period: time.Minute}, want: plain},
		{name: "other period", r: r, l: hour, want: plain + "@3600000000000"},
		{name: "tenant and other period", tenant: "acme", r: r, l: hour, want: "n4:acme" + plain + "@3600000000000"},
		{name: "Envoy override always", r: &over, l: over.Limit, want: "f3:dom" + "o" + "1:k7:1.2.3.4@1000000000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := string(AppendCounterKey(nil, tc.tenant, tc.r, d, tc.l))
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if tc.tenant == "" {
				if _, err := parseKey(got); err != nil {
					t.Errorf("parseKey(%q): %v", got, err)
				}
			}
		})
	}
	// A value that looks like a period suffix stays inside its field.
	a := string(AppendCounterKey(nil, "", r, desc("k", "x@60"), r.Limit))
	b := string(AppendCounterKey(nil, "", r, desc("k", "x"), limiter.Limit{Requests: 1, Period: 60}))
	if a == b {
		t.Errorf("value %q and period 60ns share key %q", "x@60", a)
	}
	buf := make([]byte, 0, 256)
	if allocs := testing.AllocsPerRun(100, func() { buf = AppendCounterKey(buf[:0], "acme", r, d, hour) }); allocs != 0 {
		t.Errorf("AppendCounterKey allocates %v times, want 0", allocs)
	}
}
