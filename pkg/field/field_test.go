package field

import (
	"errors"
	"fmt"
	"testing"
)

func TestJoin(t *testing.T) {
	for _, tc := range []struct{ path, name, want string }{
		{"", "a", "a"},
		{"a", "", "a"},
		{"a", "b", "a.b"},
		{"a", "[2]", "a[2]"},
		{"a[2]", "b.c", "a[2].b.c"},
	} {
		if got := Join(tc.path, tc.name); got != tc.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tc.path, tc.name, got, tc.want)
		}
	}
}

func TestWrapAndEach(t *testing.T) {
	inner := errors.Join(
		Errorf("window", "%v is negative", -1),
		errors.New("plain"),
		Wrap("[3]", Errorf("max_keys", "too many")),
	)
	err := Wrap("breaker", inner)
	type leaf struct{ path, msg string }
	var got []leaf
	Each(err, func(path string, e error) { got = append(got, leaf{path, e.Error()}) })
	want := []leaf{
		{"breaker.window", "-1 is negative"},
		{"breaker", "plain"},
		{"breaker[3].max_keys", "too many"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Each = %v, want %v", got, want)
	}
	if Wrap("x", nil) != nil {
		t.Error("Wrap(x, nil) != nil")
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Path != "breaker.window" {
		t.Errorf("errors.As found %v, want the breaker.window error", fe)
	}
	if s := Errorf("", "bare").Error(); s != "bare" {
		t.Errorf("empty path formats as %q", s)
	}
}

func TestErrorfWraps(t *testing.T) {
	base := errors.New("base")
	if err := Errorf("p", "ctx: %w", base); !errors.Is(err, base) {
		t.Errorf("Errorf with %%w does not wrap: %v", err)
	}
}
