package insight

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Head is what every answer starts with.
type Head struct {
	// Scope is ScopeFleet or ScopeReplica.
	Scope string `json:"scope"`
	// Replicas is the number of replicas that reported in the period
	// answered for (1 for replica scope).
	Replicas    int       `json:"replicas"`
	GeneratedAt time.Time `json:"generated_at"`
	// Warning says why a fleet-wide answer fell back to this replica.
	Warning string `json:"warning,omitempty"`
}

// RulesAnswer is GET /api/v1/rules.
type RulesAnswer struct {
	Head
	Rules []RuleStats `json:"rules"`
}

// RuleStats are one rule's rates (per second) and totals.
type RuleStats struct {
	Domain string `json:"domain"`
	Rule   string `json:"rule"`
	Rate1m Rate   `json:"rate_1m"`
	Rate5m Rate   `json:"rate_5m"`
	Totals Counts `json:"totals"`
}

// Rate is a rate per second.
type Rate struct {
	Admitted float64 `json:"admitted"`
	Refused  float64 `json:"refused"`
}

// Counts are weights (hits) by outcome; Admitted includes NearLimit and
// Shadow.
type Counts struct {
	Admitted  int64 `json:"admitted"`
	Refused   int64 `json:"refused"`
	NearLimit int64 `json:"near_limit"`
	Shadow    int64 `json:"shadow"`
}

func countsOf(c counts) Counts {
	return Counts{Admitted: c.admitted(), Refused: c[Refused], NearLimit: c[NearLimit], Shadow: c[Shadow]}
}

// OffendersAnswer is GET /api/v1/offenders.
type OffendersAnswer struct {
	Head
	Window string `json:"window"`
	// ErrorBound bounds the overcount of every count shown, and the count
	// of any value not shown (Space-Saving: at most N/k per sketch).
	ErrorBound int64      `json:"error_bound"`
	Offenders  []Offender `json:"offenders"`
}

// Offender is one value of one rule.
type Offender struct {
	Domain    string    `json:"domain"`
	Rule      string    `json:"rule"`
	Value     string    `json:"value"`
	Refused   int64     `json:"refused"`
	Admitted  int64     `json:"admitted"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	LastSeen  time.Time `json:"last_seen,omitzero"`

	first, last int64
}

// DetailAnswer is GET /api/v1/offenders/detail.
type DetailAnswer struct {
	Head
	Window     string     `json:"window"`
	ErrorBound int64      `json:"error_bound"`
	Value      string     `json:"value"`
	Rules      []Offender `json:"rules"`
}

// HistoryAnswer is GET /api/v1/history.
type HistoryAnswer struct {
	Head
	RetentionDays int           `json:"retention_days"`
	Days          []HistoryDay  `json:"days"`
	Hours         []HistoryHour `json:"hours"`
}

// HistoryDay is one UTC day.
type HistoryDay struct {
	Date         string       `json:"date"`
	Rules        []RuleCounts `json:"rules"`
	TopOffenders []Offender   `json:"top_offenders"`
}

// HistoryHour is one hour.
type HistoryHour struct {
	Hour  time.Time    `json:"hour"`
	Rules []RuleCounts `json:"rules"`
}

// RuleCounts are one rule's counts in a period.
type RuleCounts struct {
	Domain string `json:"domain"`
	Rule   string `json:"rule"`
	Counts
}

// API limits.
const (
	defaultLimit    = 20
	maxLimit        = 100
	defaultDays     = 7
	historyTopN     = 20
	defaultWindow   = "5m"
	detailWindowDef = "24h"
)

// Handler returns the JSON API, to be mounted at /api/v1/ of the admin
// listener: rules, offenders, offenders/detail and history (see the
// README). Bad parameters answer 400 with {"error": "..."}.
func (r *Recorder) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/rules", r.serveRules)
	mux.HandleFunc("GET /api/v1/offenders", r.serveOffenders)
	mux.HandleFunc("GET /api/v1/offenders/detail", r.serveDetail)
	mux.HandleFunc("GET /api/v1/history", r.serveHistory)
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusNotFound, errorBody{"no such API; try /api/v1/rules, /api/v1/offenders, /api/v1/offenders/detail, /api/v1/history"})
	})
	return mux
}

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away
}

func (r *Recorder) fail(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusInternalServerError, errorBody{err.Error()})
}

// head builds the common fields.
func head(ctx context.Context, src source, now, span int64, warning string) Head {
	h := Head{Scope: src.scope(), Replicas: 1, GeneratedAt: unixTime(now), Warning: warning}
	if n, err := src.replicas(ctx, now, span); err == nil && n > 0 {
		h.Replicas = n
	}
	return h
}

func (r *Recorder) serveRules(w http.ResponseWriter, req *http.Request) {
	ans, err := r.Rules(req.Context())
	if err != nil {
		r.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// Rules answers GET /api/v1/rules.
func (r *Recorder) Rules(ctx context.Context) (RulesAnswer, error) {
	now := r.opts.Now().Unix()
	var ans RulesAnswer
	warning, err := r.query(ctx, now, func(src source) error {
		rr, err := src.rates(ctx, now)
		if err != nil {
			return err
		}
		ans = RulesAnswer{Head: head(ctx, src, now, 300, ""), Rules: make([]RuleStats, 0, len(rr))}
		frac := float64(now%60) / 60
		for _, x := range rr {
			ans.Rules = append(ans.Rules, RuleStats{Domain: x.id.Domain, Rule: x.id.Rule, Rate1m: rate(x.minutes[:2], frac, 60), Rate5m: rate(x.minutes[:], frac, 300), Totals: countsOf(x.total)})
		}
		return nil
	})
	ans.Warning = warning
	slices.SortFunc(ans.Rules, func(a, b RuleStats) int { return cmpID(ruleID{a.Domain, a.Rule}, ruleID{b.Domain, b.Rule}) })
	return ans, err
}

// rate estimates a rate over secs seconds from minute counts (ms[0] the
// current minute, partly elapsed by frac): the last of ms is weighted by
// the part of it still inside the window, as a sliding window does.
func rate(ms []counts, frac float64, secs float64) Rate {
	var a, rf float64
	for i, c := range ms {
		wt := 1.0
		if i == len(ms)-1 && i > 0 {
			wt = 1 - frac
		}
		a += wt * float64(c.admitted())
		rf += wt * float64(c[Refused])
	}
	return Rate{Admitted: a / secs, Refused: rf / secs}
}

func cmpID(a, b ruleID) int {
	if a.Domain != b.Domain {
		if a.Domain < b.Domain {
			return -1
		}
		return 1
	}
	switch {
	case a.Rule < b.Rule:
		return -1
	case a.Rule > b.Rule:
		return 1
	}
	return 0
}

// OffendersQuery selects offenders.
type OffendersQuery struct {
	Domain, Rule string // "" matches any
	Window       string // 5m, 1h, 24h or 7d
	Limit        int
}

func parseWindow(v, def string) (window, error) {
	if v == "" {
		v = def
	}
	w, ok := windowNamed(v)
	if !ok {
		return w, fmt.Errorf("window %q: want 5m, 1h, 24h or 7d", v)
	}
	return w, nil
}

func (r *Recorder) serveOffenders(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	oq := OffendersQuery{Domain: q.Get("domain"), Rule: q.Get("rule"), Window: q.Get("window"), Limit: defaultLimit}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			writeJSON(w, http.StatusBadRequest, errorBody{fmt.Sprintf("limit %q: want an integer from 1 to %d (default %d)", v, maxLimit, defaultLimit)})
			return
		}
		oq.Limit = n
	}
	if _, err := parseWindow(oq.Window, defaultWindow); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	ans, err := r.Offenders(req.Context(), oq)
	if err != nil {
		r.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// Offenders answers GET /api/v1/offenders.
func (r *Recorder) Offenders(ctx context.Context, q OffendersQuery) (OffendersAnswer, error) {
	win, err := parseWindow(q.Window, defaultWindow)
	if err != nil {
		return OffendersAnswer{}, err
	}
	if q.Limit <= 0 {
		q.Limit = defaultLimit
	}
	now := r.opts.Now().Unix()
	ans := OffendersAnswer{Window: win.name, Offenders: []Offender{}}
	warning, err := r.query(ctx, now, func(src source) error {
		rws, err := src.windows(ctx, now, win, func(id ruleID) bool {
			return (q.Domain == "" || q.Domain == id.Domain) && (q.Rule == "" || q.Rule == id.Rule)
		})
		if err != nil {
			return err
		}
		ans.Head = head(ctx, src, now, win.span, "")
		ans.Offenders, ans.ErrorBound = []Offender{}, 0
		for _, rw := range rws {
			ans.ErrorBound = max(ans.ErrorBound, rw.ref.Floor, rw.adm.Floor)
			ans.Offenders = append(ans.Offenders, topOffenders(rw.id, rw.ref, rw.adm, q.Limit)...)
		}
		return nil
	})
	ans.Warning = warning
	sortOffenders(ans.Offenders)
	if len(ans.Offenders) > q.Limit {
		ans.Offenders = ans.Offenders[:q.Limit]
	}
	withTimes(ans.Offenders)
	return ans, err
}

func withTimes(os []Offender) {
	for i := range os {
		os[i].FirstSeen, os[i].LastSeen = unixTime(os[i].first), unixTime(os[i].last)
	}
}

func (r *Recorder) serveDetail(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	v := q.Get("value")
	if v == "" {
		writeJSON(w, http.StatusBadRequest, errorBody{"value: required (a value as /api/v1/offenders shows it)"})
		return
	}
	if _, err := parseWindow(q.Get("window"), detailWindowDef); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{err.Error()})
		return
	}
	ans, err := r.Detail(req.Context(), v, q.Get("window"))
	if err != nil {
		r.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// Detail answers GET /api/v1/offenders/detail: the rules that counted
// value in the window (default 24h), most refused first.
func (r *Recorder) Detail(ctx context.Context, value, windowName string) (DetailAnswer, error) {
	win, err := parseWindow(windowName, detailWindowDef)
	if err != nil {
		return DetailAnswer{}, err
	}
	now := r.opts.Now().Unix()
	ans := DetailAnswer{Window: win.name, Value: value, Rules: []Offender{}}
	warning, err := r.query(ctx, now, func(src source) error {
		rws, err := src.windows(ctx, now, win, nil)
		if err != nil {
			return err
		}
		ans.Head = head(ctx, src, now, win.span, "")
		ans.Rules, ans.ErrorBound = []Offender{}, 0
		for _, rw := range rws {
			re, okr := rw.ref.find(value)
			ae, oka := rw.adm.find(value)
			if !okr && !oka {
				continue
			}
			ans.ErrorBound = max(ans.ErrorBound, rw.ref.Floor, rw.adm.Floor)
			ans.Rules = append(ans.Rules, topOffenders(rw.id, onlyEntry(re, okr), onlyEntry(ae, oka), 1)...)
		}
		return nil
	})
	ans.Warning = warning
	sortOffenders(ans.Rules)
	withTimes(ans.Rules)
	return ans, err
}

func onlyEntry(e Entry, ok bool) list {
	if !ok {
		return list{}
	}
	return list{Entries: []Entry{e}}
}

func (r *Recorder) serveHistory(w http.ResponseWriter, req *http.Request) {
	days := defaultDays
	rd := r.st.retentionDays()
	if v := req.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > rd {
			writeJSON(w, http.StatusBadRequest, errorBody{fmt.Sprintf("days %q: want an integer from 1 to %d (the retention; default %d)", v, rd, defaultDays)})
			return
		}
		days = n
	}
	ans, err := r.History(req.Context(), days)
	if err != nil {
		r.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// History answers GET /api/v1/history: the last days (oldest first, today
// included) and the last 48 hours.
func (r *Recorder) History(ctx context.Context, days int) (HistoryAnswer, error) {
	days = min(max(days, 1), r.st.retentionDays())
	now := r.opts.Now().Unix()
	ans := HistoryAnswer{RetentionDays: r.st.retentionDays()}
	warning, err := r.query(ctx, now, func(src source) error {
		h, err := src.history(ctx, now, days)
		if err != nil {
			return err
		}
		ans.Head = head(ctx, src, now, int64(days)*86400, "")
		ans.Days, ans.Hours = historyDays(h, now, days), historyHours(h, now)
		return nil
	})
	ans.Warning = warning
	return ans, err
}

func historyDays(h histData, now int64, days int) []HistoryDay {
	starts := bucketStarts(now, int64(days-1)*86400, 86400)
	out := make([]HistoryDay, 0, len(starts))
	for i := len(starts) - 1; i >= 0; i-- {
		s := starts[i]
		top := slices.Clone(h.tops[s])
		sortOffenders(top)
		if len(top) > historyTopN {
			top = top[:historyTopN]
		}
		withTimes(top)
		if top == nil {
			top = []Offender{}
		}
		out = append(out, HistoryDay{Date: unixTime(s).Format(time.DateOnly), Rules: ruleCounts(h.days[s]), TopOffenders: top})
	}
	return out
}

func historyHours(h histData, now int64) []HistoryHour {
	starts := bucketStarts(now, 47*3600, 3600)
	out := make([]HistoryHour, 0, len(starts))
	for i := len(starts) - 1; i >= 0; i-- {
		s := starts[i]
		out = append(out, HistoryHour{Hour: unixTime(s), Rules: ruleCounts(h.hours[s])})
	}
	return out
}

func ruleCounts(m map[ruleID]counts) []RuleCounts {
	out := make([]RuleCounts, 0, len(m))
	for id, c := range m {
		out = append(out, RuleCounts{Domain: id.Domain, Rule: id.Rule, Counts: countsOf(c)})
	}
	slices.SortFunc(out, func(a, b RuleCounts) int { return cmpID(ruleID{a.Domain, a.Rule}, ruleID{b.Domain, b.Rule}) })
	return out
}
