package descriptor

import (
	"strings"
	"testing"
)

// UnitNames names every valid unit once, shortest period first, and each
// name round-trips through MarshalText and UnmarshalText.
func TestUnitNames(t *testing.T) {
	names := strings.Split(UnitNames, ", ")
	if len(names) != int(UnitWeek) {
		t.Fatalf("UnitNames has %d names, want %d", len(names), UnitWeek)
	}
	var prev Unit
	for _, n := range names {
		var u Unit
		if err := u.UnmarshalText([]byte(n)); err != nil {
			t.Fatalf("UnmarshalText(%q): %v", n, err)
		}
		if prev.Valid() && u.Period() <= prev.Period() {
			t.Errorf("%s listed after %s but not longer", u, prev)
		}
		if text, err := u.MarshalText(); err != nil || string(text) != n {
			t.Errorf("MarshalText(%v) = %q, %v; want %q", u, text, err, n)
		}
		prev = u
	}
	var u Unit
	if err := u.UnmarshalText([]byte("fortnight")); err == nil || err.Error() != `unknown unit "fortnight": expected one of `+UnitNames {
		t.Errorf("UnmarshalText(fortnight) = %v", err)
	}
	if text, err := UnitUnknown.MarshalText(); err != nil || len(text) != 0 {
		t.Errorf("UnitUnknown.MarshalText() = %q, %v; want empty", text, err)
	}
	if _, err := Unit(99).MarshalText(); err == nil {
		t.Error("Unit(99).MarshalText() succeeded")
	}
}
