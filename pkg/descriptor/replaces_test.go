package descriptor

import "testing"

func TestDropReplaced(t *testing.T) {
	a := &Rule{Path: "a", Name: "a"}
	b := &Rule{Path: "b", Name: "b", Replaces: []string{"a"}}
	c := &Rule{Path: "c", Name: "c", Replaces: []string{"b"}}
	u := &Rule{Path: "u", Unlimited: true, Replaces: []string{"a"}}
	x := &Rule{Path: "x"}
	nu := &Rule{Path: "nu", Name: "nu", Unlimited: true}
	rnu := &Rule{Path: "rnu", Name: "rnu", Replaces: []string{"nu"}}
	tests := []struct {
		name string
		in   []*Rule
		want []*Rule
	}{
		{name: "nothing replaces", in: []*Rule{a, nil, x}, want: []*Rule{a, nil, x}},
		{name: "b replaces a", in: []*Rule{a, b}, want: []*Rule{nil, b}},
		{name: "order does not matter", in: []*Rule{b, a}, want: []*Rule{b, nil}},
		{name: "replaced rules still replace", in: []*Rule{a, b, c}, want: []*Rule{nil, nil, c}},
		{name: "unlimited rules replace", in: []*Rule{a, u}, want: []*Rule{nil, u}},
		{name: "replacing a rule that did not match", in: []*Rule{b, x}, want: []*Rule{b, x}},
		{name: "a replaced unlimited rule stays unlimited", in: []*Rule{nu, rnu}, want: []*Rule{nu, rnu}},
		{name: "same rule twice", in: []*Rule{a, a, b}, want: []*Rule{nil, nil, b}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := append([]*Rule(nil), tc.in...)
			DropReplaced(got)
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("DropReplaced: [%d] = %v, want %v", i, pathOf(got[i]), pathOf(tc.want[i]))
				}
			}
		})
	}
	many := make([]*Rule, 70)
	many[0], many[69] = a, b
	DropReplaced(many)
	if many[0] != nil || many[69] != b {
		t.Errorf("DropReplaced with 70 rules: [0] = %v, [69] = %v; want nil, b", pathOf(many[0]), pathOf(many[69]))
	}
	in := []*Rule{a, b, x}
	if allocs := testing.AllocsPerRun(100, func() { in[0] = a; DropReplaced(in) }); allocs != 0 {
		t.Errorf("DropReplaced allocates %v times, want 0", allocs)
	}
}

func pathOf(r *Rule) string {
	if r == nil {
		return "nil"
	}
	return r.Path
}
