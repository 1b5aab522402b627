package descriptor

import (
	"slices"
	"testing"
)

func TestParseDescriptor(t *testing.T) {
	tests := []struct {
		in      string
		want    Descriptor
		wantErr bool
	}{
		{in: "remote_address=10.0.0.1", want: desc("remote_address", "10.0.0.1")},
		{in: "a=1,b=2", want: desc("a", "1", "b", "2")},
		{in: "path=/x?a=b", want: desc("path", "/x?a=b")},
		{in: `q=a\,b,k\=ey=v\\`, want: desc("q", "a,b", "k=ey", `v\`)},
		{in: "k", wantErr: true},
		{in: "a=1,", wantErr: true},
		{in: "k=", want: desc("k", "")},
		{in: "", wantErr: true},
		{in: "=v", wantErr: true},
		{in: "a=1,,b=2", wantErr: true},
	}
	for _, tc := range tests {
		got, err := ParseDescriptor(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("ParseDescriptor(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if got := desc("a", "1", "b", "").String(); got != "(a=1, b=)" {
		t.Errorf("String() = %q, want %q", got, "(a=1, b=)")
	}
}
