package descriptor

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/field"
)

// checkBounds checks a whole request with the Check methods in the order
// the RateLimitService handler calls them, returning the first violation:
// descHits[i] is descriptor i's hits_addend (0 when unset or missing).
func checkBounds(b Bounds, ds []Descriptor, hitsAddend uint64, descHits []uint64) error {
	if err := b.CheckRequest(len(ds), hitsAddend); err != nil {
		return err
	}
	for i, d := range ds {
		var h uint64
		if i < len(descHits) {
			h = descHits[i]
		}
		if err := b.CheckDescriptor(i, len(d), h); err != nil {
			return err
		}
		for j := range d {
			if err := b.CheckEntry(i, j, d[j].Key); err != nil {
				return err
			}
		}
	}
	return nil
}

func TestCheckBounds(t *testing.T) {
	small := Bounds{MaxDescriptors: 2, MaxEntries: 2, MaxKeyLength: 3, MaxValueLength: 4, MaxHitsAddend: 10}
	d := func(kv ...string) Descriptor {
		var out Descriptor
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, Entry{Key: kv[i], Value: kv[i+1]})
		}
		return out
	}
	tests := []struct {
		name     string
		bounds   Bounds
		ds       []Descriptor
		hits     uint64
		descHits []uint64
		// want is the error message; "" for nil.
		want      string
		wantBound string
	}{
		{name: "within", bounds: small, ds: []Descriptor{d("abc", "1234", "k", ""), d("k", "v")}, hits: 10, descHits: []uint64{10, 0}},
		{name: "too many descriptors", bounds: small, ds: []Descriptor{d("k", "v"), d("k", "v"), d("k", "v")},
			want: "3 descriptors is more than max_descriptors 2", wantBound: BoundDescriptors},
		{name: "request hits", bounds: small, ds: []Descriptor{d("k", "v")}, hits: 11,
			want: "hits_addend: 11 is more than max_hits_addend 10", wantBound: BoundHitsAddend},
		{name: "too many entries", bounds: small, ds: []Descriptor{d("k", "v"), d("a", "1", "b", "2", "c", "3")},
			want: "descriptors[1]: 3 entries is more than max_entries 2", wantBound: BoundEntries},
		{name: "descriptor hits", bounds: small, ds: []Descriptor{d("k", "v"), d("k", "v")}, descHits: []uint64{0, 11},
			want: "descriptors[1].hits_addend: 11 is more than max_hits_addend 10", wantBound: BoundHitsAddend},
		{name: "long key", bounds: small, ds: []Descriptor{d("k", "v", "abcd", "v")},
			want: "descriptors[0].entries[1].key: 4 bytes is more than max_key_length 3", wantBound: BoundKeyLength},
		// Long values are counted under their hash, never refused.
		{name: "long value", bounds: small, ds: []Descriptor{d("k", "v"), d("k", "12345")}},
		{name: "first violation wins", bounds: small, ds: []Descriptor{d("abcd", "v", "abcde", "v")},
			want: "descriptors[0].entries[0].key: 4 bytes is more than max_key_length 3", wantBound: BoundKeyLength},
		{name: "short descHits", bounds: small, ds: []Descriptor{d("k", "v"), d("k", "v")}, descHits: []uint64{1}},
		{name: "zero bounds are defaults", ds: []Descriptor{d(strings.Repeat("k", DefaultMaxKeyLength), strings.Repeat("v", DefaultMaxValueLength))},
			hits: DefaultMaxHitsAddend},
		{name: "default value length", ds: []Descriptor{d("k", strings.Repeat("v", DefaultMaxValueLength+1))}},
		{name: "default key length", ds: []Descriptor{d(strings.Repeat("k", DefaultMaxKeyLength+1), "v")},
			want: "descriptors[0].entries[0].key: 257 bytes is more than max_key_length 256", wantBound: BoundKeyLength},
		{name: "default hits", ds: []Descriptor{d("k", "v")}, hits: DefaultMaxHitsAddend + 1,
			want: "hits_addend: 1000000001 is more than max_hits_addend 1000000000", wantBound: BoundHitsAddend},
		{name: "negative bounds are defaults", bounds: Bounds{MaxDescriptors: -1, MaxEntries: -1},
			ds:   make([]Descriptor, DefaultMaxDescriptors+1),
			want: "65 descriptors is more than max_descriptors 64", wantBound: BoundDescriptors},
		{name: "default entries", ds: []Descriptor{make(Descriptor, DefaultMaxEntries+1)},
			want: "descriptors[0]: 33 entries is more than max_entries 32", wantBound: BoundEntries},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkBounds(tc.bounds, tc.ds, tc.hits, tc.descHits)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("check: got %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("check: got nil, want %q", tc.want)
			}
			if got := err.Error(); got != tc.want {
				t.Errorf("check: got %q, want %q", got, tc.want)
			}
			if !errors.Is(err, ErrOutOfBounds) {
				t.Errorf("errors.Is(err, ErrOutOfBounds) = false, want true")
			}
			var be *BoundsError
			if !errors.As(err, &be) {
				t.Fatalf("errors.As(%T, *BoundsError) = false, want true", err)
			}
			if be.Bound != tc.wantBound {
				t.Errorf("Bound: got %q, want %q", be.Bound, tc.wantBound)
			}
		})
	}
}

func TestBoundsWithDefaults(t *testing.T) {
	got := Bounds{MaxEntries: 5, MaxKeyLength: -3}.WithDefaults()
	want := Bounds{MaxDescriptors: DefaultMaxDescriptors, MaxEntries: 5, MaxKeyLength: DefaultMaxKeyLength,
		MaxValueLength: DefaultMaxValueLength, MaxHitsAddend: DefaultMaxHitsAddend}
	if got != want {
		t.Errorf("WithDefaults: got %+v, want %+v", got, want)
	}
}

func TestCheckBoundsDoesNotAllocate(t *testing.T) {
	ds := []Descriptor{{{Key: "remote_address", Value: "10.0.0.1"}}, {{Key: "path", Value: "/api"}, {Key: "method", Value: "GET"}}}
	hits := []uint64{1, 2}
	var b Bounds
	if n := testing.AllocsPerRun(100, func() {
		if err := checkBounds(b, ds, 1, hits); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("the Check methods allocate %v times per call, want 0", n)
	}
}

func ExampleBounds_CheckEntry() {
	var b Bounds // zero Bounds: the defaults
	err := b.CheckEntry(0, 0, strings.Repeat("k", 300))
	var be *BoundsError
	if errors.As(err, &be) {
		// A gRPC handler answers codes.InvalidArgument with err.Error().
		fmt.Println(be.Bound)
		fmt.Println(err)
	}
	fmt.Println(b.ValueLength())
	// Output:
	// max_key_length
	// descriptors[0].entries[0].key: 300 bytes is more than max_key_length 256
	// 4096
}

// TestBoundsValidate: max_hits_addend is at most 2^53-1, the most hits
// every store counts exactly (issue 16, finding 6: a larger bound let
// requests through that the Redis store then refused, answering INTERNAL).
func TestBoundsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    Bounds
		path string // "" when valid
	}{
		{name: "zero: defaults", b: Bounds{}},
		{name: "largest hits addend", b: Bounds{MaxHitsAddend: MaxHitsAddendLimit}},
		{name: "hits addend 2^53", b: Bounds{MaxHitsAddend: MaxHitsAddendLimit + 1}, path: BoundHitsAddend},
		{name: "hits addend 2^63", b: Bounds{MaxHitsAddend: 1 << 63}, path: BoundHitsAddend},
		{name: "negative descriptors", b: Bounds{MaxDescriptors: -1}, path: BoundDescriptors},
		{name: "negative value length", b: Bounds{MaxValueLength: -1}, path: "max_value_length"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.b.Validate()
			var fe *field.Error
			switch {
			case tc.path == "" && err != nil:
				t.Fatalf("Validate: %v, want nil", err)
			case tc.path != "" && (!errors.As(err, &fe) || fe.Path != tc.path):
				t.Fatalf("Validate: %v, want a field error at %q", err, tc.path)
			}
		})
	}
}
