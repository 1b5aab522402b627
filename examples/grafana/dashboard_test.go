// Package grafana_test checks the example Grafana dashboard: it is valid
// JSON with unique panel ids inside Grafana's 24-column grid, and every
// extauthz metric its queries use is one the server registers (or one of
// the few listed as pending below).
package grafana_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/pkg/opsmetrics"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/xdsrules"
)

// pending are the metrics the dashboard shows that no package registers
// yet. Remove each from here once it is registered.
var pending = []string{}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	GridPos struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

type dashboard struct {
	Title       string  `json:"title"`
	UID         string  `json:"uid"`
	Panels      []panel `json:"panels"`
	Annotations struct {
		List []struct {
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

// recorder records the names of the metrics registered through it.
type recorder struct {
	prometheus.Registerer
	names map[string]bool
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			r.names[m[1]] = true
		}
	}
	return r.Registerer.Register(c)
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

type memory struct{}

func (memory) Len() int          { return 0 }
func (memory) Evictions() uint64 { return 0 }

// registered returns the names of every extauthz metric the server and
// opsmetrics register.
func registered(t *testing.T) map[string]bool {
	r := &recorder{Registerer: prometheus.NewRegistry(), names: map[string]bool{}}
	if _, err := server.NewMetrics(r); err != nil {
		t.Fatal(err)
	}
	bm, err := server.NewBackendMetrics(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bm.Postgres("pg", func() server.PoolUsage { return server.PoolUsage{} }); err != nil {
		t.Fatal(err)
	}
	if err := bm.Lease("redis", func() server.LeaseUsage { return server.LeaseUsage{} }); err != nil {
		t.Fatal(err)
	}
	if _, err := xdsrules.NewMetrics(r); err != nil {
		t.Fatal(err)
	}
	m := opsmetrics.New(r, nil)
	if err := m.EnableTLS(); err != nil {
		t.Fatal(err)
	}
	if err := m.AddMemoryBackend("memory", memory{}); err != nil {
		t.Fatal(err)
	}
	return r.names
}

var metricName = regexp.MustCompile(`\bextauthz_[a-z0-9_]+`)

func TestDashboard(t *testing.T) {
	data, err := os.ReadFile("extauthz-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" {
		t.Errorf("title %q, uid %q: want both set", d.Title, d.UID)
	}

	known := registered(t)
	used := map[string]bool{}
	check := func(where, expr string) {
		if expr == "" {
			return
		}
		if !balanced(expr) {
			t.Errorf("%s: unbalanced brackets in %q", where, expr)
		}
		for _, name := range metricName.FindAllString(expr, -1) {
			base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_count"), "_sum")
			used[base] = true
			if !known[base] && !known[name] && !slices.Contains(pending, base) {
				t.Errorf("%s: metric %s is not registered by any package (known: %v)", where, name, sorted(known))
			}
		}
	}

	ids := map[int]string{}
	for _, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panel %q: id %d already used by %q", p.Title, p.ID, prev)
		}
		ids[p.ID] = p.Title
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, g)
		}
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q: no queries", p.Title)
		}
		for _, tg := range p.Targets {
			check("panel "+p.Title, tg.Expr)
		}
	}
	for _, a := range d.Annotations.List {
		check("annotation", a.Expr)
	}
	for _, v := range d.Templating.List {
		check("variable "+v.Name, v.Definition)
	}
	// Every registered extauthz metric has a panel.
	for name := range known {
		if strings.HasPrefix(name, "extauthz_") && !used[name] {
			t.Errorf("metric %s has no panel", name)
		}
	}
	for _, name := range pending {
		if known[name] {
			t.Errorf("metric %s is registered now: remove it from pending", name)
		}
	}
}

func balanced(s string) bool {
	var stack []rune
	pairs := map[rune]rune{')': '(', ']': '[', '}': '{'}
	inString := false
	for _, r := range s {
		switch {
		case r == '"':
			inString = !inString
		case inString:
		case r == '(' || r == '[' || r == '{':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0 && !inString
}

func sorted(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
