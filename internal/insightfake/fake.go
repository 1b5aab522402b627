// Package insightfake serves fixed traffic-insight JSON in the shape of the
// admin listener's /api/v1 (rules, offenders, offender detail, history),
// for the tests of its clients (the dashboard, extauthz top) that must not
// depend on live traffic.
package insightfake

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Rate is admitted and refused per second.
type Rate struct {
	Admitted float64 `json:"admitted"`
	Refused  float64 `json:"refused"`
}

// Totals counts decisions.
type Totals struct {
	Admitted  int64 `json:"admitted"`
	Refused   int64 `json:"refused"`
	NearLimit int64 `json:"near_limit"`
	Shadow    int64 `json:"shadow"`
}

// Rule is one entry of /api/v1/rules.
type Rule struct {
	Domain string `json:"domain"`
	Rule   string `json:"rule"`
	Rate1m Rate   `json:"rate_1m"`
	Rate5m Rate   `json:"rate_5m"`
	Totals Totals `json:"totals"`
}

// Offender is one entry of /api/v1/offenders.
type Offender struct {
	Domain    string    `json:"domain"`
	Rule      string    `json:"rule"`
	Value     string    `json:"value"`
	Refused   int64     `json:"refused"`
	Admitted  int64     `json:"admitted"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// DayRule is a rule's roll-up of one day or hour.
type DayRule struct {
	Domain    string `json:"domain"`
	Rule      string `json:"rule"`
	Admitted  int64  `json:"admitted"`
	Refused   int64  `json:"refused"`
	NearLimit int64  `json:"near_limit"`
	Shadow    int64  `json:"shadow"`
}

// DayOffender is one of a day's top offenders.
type DayOffender struct {
	Domain   string `json:"domain"`
	Rule     string `json:"rule"`
	Value    string `json:"value"`
	Refused  int64  `json:"refused"`
	Admitted int64  `json:"admitted"`
}

// Day is one day of history.
type Day struct {
	Date         string        `json:"date"`
	Rules        []DayRule     `json:"rules"`
	TopOffenders []DayOffender `json:"top_offenders"`
}

// Hour is one hour of history.
type Hour struct {
	Hour  time.Time `json:"hour"`
	Rules []DayRule `json:"rules"`
}

// Data is what the fake serves.
type Data struct {
	Scope       string // "fleet" or "replica"
	Replicas    int
	GeneratedAt time.Time
	Rules       []Rule
	// Offenders of every window; those of window W are the ones whose
	// LastSeen is within W of GeneratedAt.
	Offenders  []Offender
	ErrorBound int64
	Days       []Day
	Hours      []Hour
	// Warning, when set, is every answer's "warning".
	Warning string
	// NoHistory makes /api/v1/history answer 404, as a server without a
	// shared store may.
	NoHistory bool
}

var windows = map[string]time.Duration{"5m": 5 * time.Minute, "1h": time.Hour, "24h": 24 * time.Hour, "7d": 7 * 24 * time.Hour}

// Handler serves d under /api/v1/.
func Handler(d Data) http.Handler {
	mux := http.NewServeMux()
	head := func() map[string]any {
		m := map[string]any{"scope": d.Scope, "replicas": d.Replicas, "generated_at": d.GeneratedAt.UTC().Format(time.RFC3339)}
		if d.Warning != "" {
			m["warning"] = d.Warning
		}
		return m
	}
	mux.HandleFunc("GET /api/v1/rules", func(w http.ResponseWriter, _ *http.Request) {
		m := head()
		m["rules"] = nonNil(d.Rules)
		reply(w, http.StatusOK, m)
	})
	mux.HandleFunc("GET /api/v1/offenders", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		win := q.Get("window")
		if win == "" {
			win = "5m"
		}
		span, ok := windows[win]
		if !ok {
			reply(w, http.StatusBadRequest, map[string]any{"error": "window " + strconv.Quote(win) + ": expected 5m, 1h, 24h or 7d"})
			return
		}
		limit := 20
		if s := q.Get("limit"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > 100 {
				reply(w, http.StatusBadRequest, map[string]any{"error": "limit " + strconv.Quote(s) + ": expected 1 to 100"})
				return
			}
			limit = n
		}
		var out []Offender
		for _, o := range d.Offenders {
			if (q.Get("domain") == "" || q.Get("domain") == o.Domain) && (q.Get("rule") == "" || q.Get("rule") == o.Rule) &&
				d.GeneratedAt.Sub(o.LastSeen) <= span {
				out = append(out, o)
			}
		}
		slices.SortStableFunc(out, func(a, b Offender) int {
			if a.Refused != b.Refused {
				return int(b.Refused - a.Refused)
			}
			return int(b.Admitted - a.Admitted)
		})
		m := head()
		m["window"], m["error_bound"], m["offenders"] = win, d.ErrorBound, nonNil(out[:min(limit, len(out))])
		reply(w, http.StatusOK, m)
	})
	mux.HandleFunc("GET /api/v1/offenders/detail", func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query().Get("value")
		rules := []map[string]any{}
		for _, o := range d.Offenders {
			if o.Value == v {
				rules = append(rules, map[string]any{"domain": o.Domain, "rule": o.Rule, "refused": o.Refused, "admitted": o.Admitted,
					"first_seen": o.FirstSeen.UTC().Format(time.RFC3339), "last_seen": o.LastSeen.UTC().Format(time.RFC3339)})
			}
		}
		m := head()
		m["value"], m["rules"] = v, rules
		reply(w, http.StatusOK, m)
	})
	mux.HandleFunc("GET /api/v1/history", func(w http.ResponseWriter, _ *http.Request) {
		if d.NoHistory {
			reply(w, http.StatusNotFound, map[string]any{"error": "history needs a shared store (redis)"})
			return
		}
		m := head()
		m["retention_days"], m["days"], m["hours"] = 35, nonNil(d.Days), nonNil(d.Hours)
		reply(w, http.StatusOK, m)
	})
	return mux
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func reply(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// Sample returns a fleet of two replicas at now: three rules, three heavy
// hitters (203.0.113.7, 198.51.100.23, 192.0.2.55) ahead of a few light
// clients, one value crafted to break an unescaped page or terminal, and a
// week of history.
func Sample(now time.Time) Data {
	now = now.UTC().Truncate(time.Second)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	d := Data{
		Scope: "fleet", Replicas: 2, GeneratedAt: now, ErrorBound: 3,
		Rules: []Rule{
			{Domain: "edge", Rule: "per-ip", Rate1m: Rate{120.5, 14.25}, Rate5m: Rate{110.2, 9.8}, Totals: Totals{Admitted: 402133, Refused: 5120, NearLimit: 812, Shadow: 0}},
			{Domain: "edge", Rule: "per-path", Rate1m: Rate{42, 0}, Rate5m: Rate{40.1, 0.05}, Totals: Totals{Admitted: 130220, Refused: 14, NearLimit: 3}},
			{Domain: "api", Rule: "per-key", Rate1m: Rate{8.5, 1.5}, Rate5m: Rate{7.9, 1.2}, Totals: Totals{Admitted: 20011, Refused: 733, NearLimit: 40, Shadow: 12}},
		},
		Offenders: []Offender{
			{"edge", "per-ip", "203.0.113.7", 4210, 600, ago(50 * time.Minute), ago(2 * time.Second)},
			{"edge", "per-ip", "198.51.100.23", 2875, 600, ago(40 * time.Minute), ago(3 * time.Second)},
			{"api", "per-key", "sha256:9f86d081884c", 1630, 300, ago(3 * time.Hour), ago(5 * time.Second)},
			{"edge", "per-ip", "192.0.2.55", 1544, 600, ago(30 * time.Minute), ago(4 * time.Second)},
			{"edge", "per-path", "203.0.113.7", 12, 1000, ago(20 * time.Minute), ago(9 * time.Second)},
			{"edge", "per-ip", `<img src=x onerror="window.__xss=1">` + "\x1b[2J", 7, 3, ago(4 * time.Minute), ago(61 * time.Second)},
			{"edge", "per-ip", "10.1.2.3", 5, 90, ago(2 * time.Hour), ago(20 * time.Minute)},
			{"edge", "per-ip", "10.9.9.9", 2, 40, ago(30 * time.Hour), ago(26 * time.Hour)},
		},
	}
	for i := 6; i >= 0; i-- {
		day := now.AddDate(0, 0, -i)
		k := int64(7 - i)
		d.Days = append(d.Days, Day{
			Date: day.Format("2006-01-02"),
			Rules: []DayRule{
				{Domain: "edge", Rule: "per-ip", Admitted: 300000 + 1000*k, Refused: 900 * k * k % 5000, NearLimit: 100 * k},
				{Domain: "api", Rule: "per-key", Admitted: 18000, Refused: 100 * k, Shadow: k},
			},
			TopOffenders: []DayOffender{
				{Domain: "edge", Rule: "per-ip", Value: "203.0.113.7", Refused: 400 * k, Admitted: 900},
				{Domain: "api", Rule: "per-key", Value: "sha256:9f86d081884c", Refused: 90 * k, Admitted: 300},
			},
		})
	}
	start := now.Truncate(time.Hour).Add(-47 * time.Hour)
	for i := range 48 {
		d.Hours = append(d.Hours, Hour{Hour: start.Add(time.Duration(i) * time.Hour), Rules: []DayRule{
			{Domain: "edge", Rule: "per-ip", Admitted: 12000, Refused: int64(50 + (i*37)%200)},
			{Domain: "api", Rule: "per-key", Admitted: 800, Refused: int64((i * 11) % 40)},
		}})
	}
	return d
}
