package insight

import (
	"cmp"
	"slices"
	"unsafe"
)

// sketch is a weighted Space-Saving summary (Metwally, Agrawal, El Abbadi,
// 2005) of at most k values. We chose Space-Saving over Count-Min or
// HeavyKeeper because it is deterministic (no hashing luck, reproducible
// tests), its error is guaranteed rather than probable, it is mergeable
// (replicas and time buckets combine; see merge), and it uses exactly k
// counters whatever the number of distinct values.
//
// Guarantee: after a stream of total weight N, every tracked value's count
// overestimates its true weight by at most its err, and err <= min <= N/k,
// where min is the smallest count when the sketch is full (0 before); a
// value that is not tracked has a true weight of at most min.
//
// Adding an already tracked value allocates nothing: a map lookup and a
// sift in a min-heap of slot indices. A new value costs one string copy.
// A sketch is not safe for concurrent use; shards lock around it.
type sketch struct {
	k     int
	idx   map[string]int32 // value → slot
	slots []slot
	heap  []int32 // slot indices, min-heap by count
	n     int64   // total weight added
}

type slot struct {
	value       string
	count       int64
	first, last int64 // unix seconds
	pos         int32 // index in heap
}

func newSketch(k int) *sketch {
	return &sketch{k: k, idx: make(map[string]int32, k), slots: make([]slot, 0, k), heap: make([]int32, 0, k)}
}

// reset empties s, keeping its memory.
func (s *sketch) reset() {
	clear(s.idx)
	clear(s.slots[:cap(s.slots)])
	s.slots, s.heap, s.n = s.slots[:0], s.heap[:0], 0
}

// add counts weight w for value key at time now (unix seconds). key is only
// read; it is copied when it becomes tracked.
func (s *sketch) add(key []byte, w, now int64) {
	s.n += w
	if i, ok := s.idx[string(key)]; ok {
		sl := &s.slots[i]
		sl.count += w
		sl.last = now
		s.down(int(sl.pos))
		return
	}
	v := string(key)
	if len(s.slots) < s.k {
		i := int32(len(s.slots))
		s.slots = append(s.slots, slot{value: v, count: w, first: now, last: now, pos: int32(len(s.heap))})
		s.heap = append(s.heap, i)
		s.idx[v] = i
		s.up(len(s.heap) - 1)
		return
	}
	// Replace the minimum: the newcomer inherits its count as error.
	i := s.heap[0]
	sl := &s.slots[i]
	delete(s.idx, sl.value)
	sl.value, sl.count, sl.first, sl.last = v, sl.count+w, now, now
	s.idx[v] = i
	s.down(0)
}

// floor is the sketch's error bound: 0 until it is full, then its minimum.
func (s *sketch) floor() int64 {
	if len(s.slots) < s.k || len(s.heap) == 0 {
		return 0
	}
	return s.slots[s.heap[0]].count
}

// top returns the sketch's contents as a list (counts descending).
func (s *sketch) top() list {
	l := list{Floor: s.floor(), N: s.n, Entries: make([]Entry, len(s.slots))}
	for i, sl := range s.slots {
		l.Entries[i] = Entry{Value: sl.value, Count: sl.count, First: sl.first, Last: sl.last}
	}
	l.sort()
	return l
}

func (s *sketch) less(a, b int) bool {
	return s.slots[s.heap[a]].count < s.slots[s.heap[b]].count
}

func (s *sketch) swap(a, b int) {
	s.heap[a], s.heap[b] = s.heap[b], s.heap[a]
	s.slots[s.heap[a]].pos = int32(a)
	s.slots[s.heap[b]].pos = int32(b)
}

func (s *sketch) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *sketch) down(i int) {
	n := len(s.heap)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && s.less(r, l) {
			m = r
		}
		if !s.less(m, i) {
			return
		}
		s.swap(i, m)
		i = m
	}
}

// Entry is one value of a top list.
type Entry struct {
	Value       string
	Count       int64
	First, Last int64 // unix seconds
}

// list is an immutable Space-Saving summary: at most k entries, counts
// descending. Floor bounds both the overcount of every entry and the true
// weight of any value not listed; N is the total weight summarised.
type list struct {
	Entries []Entry
	Floor   int64
	N       int64
}

func (l *list) sort() {
	slices.SortFunc(l.Entries, func(a, b Entry) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Value, b.Value)
	})
}

// find returns the entry of value v.
func (l *list) find(v string) (Entry, bool) {
	for _, e := range l.Entries {
		if e.Value == v {
			return e, true
		}
	}
	return Entry{}, false
}

// merge combines summaries of disjoint streams into one of at most k
// entries (Agarwal et al., "Mergeable summaries", 2012): a value missing
// from a part is counted at that part's floor, its largest possible true
// weight, so that counts still only overestimate. The result's floor is the
// sum of the parts' floors, or the largest count dropped to keep k entries
// when that is larger: every listed count overestimates by at most it, and
// no unlisted value weighs more.
func merge(k int, parts ...list) list {
	var out list
	var floors int64
	n := 0
	for _, p := range parts {
		floors += p.Floor
		out.N += p.N
		n += len(p.Entries)
	}
	if n == 0 {
		out.Floor = floors
		return out
	}
	type acc struct {
		e    Entry
		seen int64 // sum of the floors of the parts that list it
	}
	m := make(map[string]*acc, n)
	for _, p := range parts {
		for _, e := range p.Entries {
			a := m[e.Value]
			if a == nil {
				a = &acc{e: Entry{Value: e.Value, First: e.First, Last: e.Last}}
				m[e.Value] = a
			}
			a.e.Count += e.Count
			a.seen += p.Floor
			a.e.First = min(a.e.First, e.First)
			a.e.Last = max(a.e.Last, e.Last)
		}
	}
	out.Entries = make([]Entry, 0, len(m))
	for _, a := range m {
		a.e.Count += floors - a.seen // parts that do not list it
		out.Entries = append(out.Entries, a.e)
	}
	out.sort()
	out.Floor = floors
	if len(out.Entries) > k {
		out.Floor = max(floors, out.Entries[k].Count)
		out.Entries = slices.Clip(out.Entries[:k])
	}
	return out
}

// stringBytes returns s as a byte slice without copying; it must not be
// written.
func stringBytes(s string) []byte {
	return unsafe.Slice(unsafe.StringData(s), len(s))
}
