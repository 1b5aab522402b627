package insight

import (
	"cmp"
	"context"
	"slices"
	"time"
)

// Scopes of an answer.
const (
	ScopeFleet   = "fleet"   // from Redis: every replica that reported
	ScopeReplica = "replica" // this replica alone (memory only, or Redis unreachable)
)

// window is a window of the offenders API.
type window struct {
	name  string
	span  int64 // seconds
	width int64 // bucket width, seconds
}

// windows and the width of their buckets: each covers between its span
// and its span plus one bucket (5m: 5 to 6 minutes; 1h: 60 to 70 minutes;
// 24h: 24 to 26 hours; 7d: 7 to 8 days).
var windows = []window{{"5m", 300, 60}, {"1h", 3600, 600}, {"24h", 86400, 7200}, {"7d", 7 * 86400, 86400}}

func windowNamed(name string) (window, bool) {
	for _, w := range windows {
		if w.name == name {
			return w, true
		}
	}
	return window{}, false
}

// ruleWindow is one rule's sketches over a window.
type ruleWindow struct {
	id       ruleID
	ref, adm list
}

// ruleRates are one rule's counts in the current minute and the five
// before it (minutes[0] is the current one), and its totals.
type ruleRates struct {
	id      ruleID
	minutes [6]counts
	total   counts
}

// histData is the history of the last days and hours, by bucket start.
type histData struct {
	hours map[int64]map[ruleID]counts
	days  map[int64]map[ruleID]counts
	tops  map[int64][]Offender
}

// source answers queries: this replica's memory, or Redis for the fleet.
type source interface {
	scope() string
	replicas(ctx context.Context, now, span int64) (int, error)
	// windows returns the sketches of the rules keep accepts (nil: all).
	windows(ctx context.Context, now int64, w window, keep func(ruleID) bool) ([]ruleWindow, error)
	rates(ctx context.Context, now int64) ([]ruleRates, error)
	history(ctx context.Context, now int64, days int) (histData, error)
}

// local answers from this replica's memory; Recorder.mu must be held.
type local struct{ r *Recorder }

func (l local) scope() string { return ScopeReplica }

func (l local) replicas(context.Context, int64, int64) (int, error) { return 1, nil }

func (l local) windows(_ context.Context, now int64, w window, keep func(ruleID) bool) ([]ruleWindow, error) {
	k := l.r.st.TopK
	out := make([]ruleWindow, 0, len(l.r.order))
	for _, rs := range l.r.order {
		if keep != nil && !keep(rs.id) {
			continue
		}
		var rg *ring
		switch w.width {
		case 60:
			rg = &rs.minutes
		case 600:
			rg = &rs.tens
		case 7200:
			rg = &rs.twoHours
		default:
			rg = &rs.days
		}
		ref, adm, _ := rg.window(k, now, w.span)
		out = append(out, ruleWindow{id: rs.id, ref: ref, adm: adm})
	}
	return out, nil
}

func (l local) rates(_ context.Context, now int64) ([]ruleRates, error) {
	out := make([]ruleRates, 0, len(l.r.order))
	for _, rs := range l.r.order {
		rr := ruleRates{id: rs.id, total: rs.total}
		for i, start := range bucketStarts(now, 300, 60) {
			if b, ok := rs.minutes.at(start); ok && i < len(rr.minutes) {
				rr.minutes[i] = b.c
			}
		}
		out = append(out, rr)
	}
	return out, nil
}

func (l local) history(_ context.Context, now int64, days int) (histData, error) {
	h := histData{hours: map[int64]map[ruleID]counts{}, days: map[int64]map[ruleID]counts{}, tops: map[int64][]Offender{}}
	k := l.r.st.TopK
	for _, rs := range l.r.order {
		for _, start := range bucketStarts(now, 47*3600, 3600) {
			if c, ok := rs.hourly.at(start); ok {
				put(h.hours, start, rs.id, c)
			}
		}
		for _, start := range bucketStarts(now, int64(days-1)*86400, 86400) {
			if c, ok := rs.daily.at(start); ok {
				put(h.days, start, rs.id, c)
			}
			if b, ok := rs.days.at(start); ok {
				h.tops[start] = append(h.tops[start], topOffenders(rs.id, merge(k, b.ref), merge(k, b.adm), dayTopN)...)
			} else if t, ok := rs.archive[start]; ok {
				h.tops[start] = append(h.tops[start], t...)
			}
		}
	}
	return h, nil
}

func put(m map[int64]map[ruleID]counts, start int64, id ruleID, c counts) {
	if c.zero() {
		return
	}
	if m[start] == nil {
		m[start] = map[ruleID]counts{}
	}
	cur := m[start][id]
	cur.add(c)
	m[start][id] = cur
}

// topOffenders joins a rule's refused and admitted lists by value, ranks
// by refused then admitted, and keeps n.
func topOffenders(id ruleID, ref, adm list, n int) []Offender {
	byValue := make(map[string]int, len(ref.Entries)+len(adm.Entries))
	var out []Offender
	at := func(e Entry) *Offender {
		i, ok := byValue[e.Value]
		if !ok {
			i = len(out)
			byValue[e.Value] = i
			out = append(out, Offender{Domain: id.Domain, Rule: id.Rule, Value: e.Value, first: e.First, last: e.Last})
		}
		o := &out[i]
		o.first, o.last = min(o.first, e.First), max(o.last, e.Last)
		return o
	}
	for _, e := range ref.Entries {
		at(e).Refused = e.Count
	}
	for _, e := range adm.Entries {
		at(e).Admitted = e.Count
	}
	sortOffenders(out)
	if len(out) > n {
		out = out[:n]
	}
	return out
}

func sortOffenders(os []Offender) {
	slices.SortFunc(os, func(a, b Offender) int {
		if c := cmp.Compare(b.Refused, a.Refused); c != 0 {
			return c
		}
		if c := cmp.Compare(b.Admitted, a.Admitted); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Value, b.Value); c != 0 {
			return c
		}
		return cmp.Compare(a.Domain+"\x00"+a.Rule, b.Domain+"\x00"+b.Rule)
	})
}

// query calls fn with the source to answer from, the Recorder drained at
// now: Redis when configured (after a flush, so that this replica's latest
// decisions are included), else memory. When Redis fails, fn is called
// again on memory, and warning says why the answer is this replica's only.
func (r *Recorder) query(ctx context.Context, now int64, fn func(source) error) (warning string, err error) {
	r.mu.Lock()
	r.drainLocked(now)
	if r.fleet != nil {
		ferr := r.flushLocked(ctx)
		if ferr == nil {
			r.mu.Unlock()
			if ferr = fn(r.fleet); ferr == nil {
				return "", nil
			}
			r.mu.Lock()
		}
		warning = "fleet data unavailable, answering for this replica: " + ferr.Error()
		r.warnf(ctx, "insight: Redis failed; answering for this replica", ferr)
	}
	defer r.mu.Unlock()
	return warning, fn(local{r})
}

func unixTime(s int64) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(s, 0).UTC()
}
