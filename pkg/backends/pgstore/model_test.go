package pgstore

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/pkg/limiter"
	"github.com/extauthz/extauthz/pkg/limiter/limitertest"
)

// model is pkg/limiter's reference behaviour of a store: limiter.ApplyAll
// over states that expire at limiter.Limit.Expiry, as memstore keeps them.
type model struct {
	states map[string]limiter.State
	expiry map[string]time.Time
}

func (m *model) take(now time.Time, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) {
	states := make([]limiter.State, len(reqs))
	before := make([]limiter.State, len(reqs))
	for i, r := range reqs {
		if e, ok := m.expiry[r.Key]; ok && now.Before(e) {
			states[i] = m.states[r.Key]
		}
		before[i] = states[i]
	}
	limiter.ApplyAll(mode, now, reqs, states, res)
	for i, r := range reqs {
		if states[i] != before[i] {
			m.states[r.Key] = states[i]
			m.expiry[r.Key] = r.Limit.Expiry(states[i])
		}
	}
}

// randomLimit returns a limit of any algorithm, sometimes with extreme
// values that exercise the saturating arithmetic.
func randomLimit(rng *rand.Rand) limiter.Limit {
	l := limiter.Limit{Algorithm: limiter.Algorithm(rng.IntN(3))}
	switch rng.IntN(6) {
	case 0: // extremes
		l.Requests = []int64{0, 1, math.MaxInt64, math.MaxInt64 / 3}[rng.IntN(4)]
		l.Period = []time.Duration{1, time.Nanosecond * 7, math.MaxInt64, 292 * 365 * 24 * time.Hour}[rng.IntN(4)]
	default:
		l.Requests = rng.Int64N(20)
		l.Period = time.Duration(1+rng.Int64N(5000)) * time.Millisecond
	}
	if l.Algorithm == limiter.TokenBucket && rng.IntN(2) == 0 {
		l.Burst = []int64{1, 5, 30, math.MaxInt64}[rng.IntN(4)]
	}
	return l
}

// randomLimits returns a generator seeded from the clock (the seed is
// logged, and returned for failure messages) and n random limits from it.
func randomLimits(t *testing.T, stream uint64, n int) (*rand.Rand, uint64, []limiter.Limit) {
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, stream))
	t.Logf("seed %d", seed)
	limits := make([]limiter.Limit, n)
	for i := range limits {
		limits[i] = randomLimit(rng)
	}
	return rng, seed, limits
}

// TestMatchesLimiterModel drives the store and limiter.ApplyAll with the
// same random calls on a fake clock (which sometimes steps back) and
// requires identical results: the
// PL/pgSQL arithmetic (numeric, saturation) mirrors pkg/limiter exactly.
func TestMatchesLimiterModel(t *testing.T) {
	srv := pgtest.Shared(t)
	clock := limitertest.NewFakeClock(time.Unix(1_700_000_000, 123_456_789))
	s := openStore(t, srv, Settings{Now: clock.Now})
	const nkeys = 12
	rng, seed, limits := randomLimits(t, 7, nkeys)
	m := &model{states: map[string]limiter.State{}, expiry: map[string]time.Time{}}
	ctx := context.Background()
	for call := range 600 {
		n := 1 + rng.IntN(4)
		reqs := make([]limiter.Request, n)
		for i := range reqs {
			k := rng.IntN(nkeys)
			hits := rng.Int64N(4)
			if rng.IntN(20) == 0 {
				hits = math.MaxInt64 - rng.Int64N(2)
			}
			reqs[i] = limiter.Request{Key: fmt.Sprintf("k\x00%d", k), Limit: limits[k], Hits: hits, Shadow: rng.IntN(5) == 0}
		}
		mode := limiter.Mode(rng.IntN(2))
		got := make([]limiter.Result, n)
		want := make([]limiter.Result, n)
		if err := s.Take(ctx, mode, reqs, got); err != nil {
			t.Fatalf("call %d: Take: %v", call, err)
		}
		m.take(clock.Now(), mode, reqs, want)
		for i := range reqs {
			if got[i] != want[i] {
				t.Fatalf("call %d (seed %d) at %v, mode %d, request %d %+v of %+v:\n got %+v\nwant %+v",
					call, seed, clock.Now().UnixNano(), mode, i, reqs[i], reqs, got[i], want[i])
			}
		}
		switch rng.IntN(12) {
		case 0, 1, 2:
			clock.Advance(time.Duration(rng.Int64N(int64(3 * time.Second))))
		case 3, 4, 5:
			clock.Advance(time.Duration(rng.Int64N(1000)))
		case 6: // a clock stepped back (limiter.MaxClockStepBack and beyond)
			clock.Advance(-time.Duration(rng.Int64N(int64(2 * limiter.MaxClockStepBack))))
		}
	}
}

// TestTakeOneMatchesTake sends the same random one-request calls to take
// (arrays of one) and take_one on twin keys at the same times: every reply
// and, at the end, every stored row must be the same, so the one-request
// path decides exactly as the general one (which TestMatchesLimiterModel
// holds to pkg/limiter).
func TestTakeOneMatchesTake(t *testing.T) {
	srv := pgtest.Shared(t)
	s := openStore(t, srv, Settings{CleanupInterval: -1})
	q := quoteIdent(s.schema)
	const nkeys = 8
	rng, seed, limits := randomLimits(t, 11, nkeys)
	ctx := context.Background()
	now := int64(1_700_000_000_123_456_789)
	type reply struct {
		allowed                 bool
		remaining, reset, retry int64
	}
	for call := range 1500 {
		k := rng.IntN(nkeys)
		l := limits[k]
		hits := rng.Int64N(4)
		if rng.IntN(20) == 0 {
			hits = math.MaxInt64 - rng.Int64N(2)
		}
		shadow, mode := rng.IntN(5) == 0, rng.IntN(2)
		var many, one reply
		err := s.pool.QueryRow(ctx, `SELECT allowed[1], remaining[1], reset_after[1], retry_after[1] FROM `+q+`.take($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			[][]byte{[]byte(fmt.Sprintf("many\x00%d", k))}, []int32{int32(l.Algorithm)}, []int64{l.Requests}, []int64{int64(l.Period)},
			[]int64{l.Burst}, []int64{hits}, []bool{shadow}, mode, now).Scan(&many.allowed, &many.remaining, &many.reset, &many.retry)
		if err != nil {
			t.Fatalf("call %d: take: %v", call, err)
		}
		err = s.pool.QueryRow(ctx, `SELECT allowed, remaining, reset_after, retry_after FROM `+q+`.take_one($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			[]byte(fmt.Sprintf("one\x00%d", k)), int32(l.Algorithm), l.Requests, int64(l.Period), l.Burst, hits, shadow, mode, now).
			Scan(&one.allowed, &one.remaining, &one.reset, &one.retry)
		if err != nil {
			t.Fatalf("call %d: take_one: %v", call, err)
		}
		if one != many {
			t.Fatalf("call %d (seed %d) at %d, mode %d, shadow %v, %d hits of %+v: take_one %+v, take %+v", call, seed, now, mode, shadow, hits, l, one, many)
		}
		switch rng.IntN(8) {
		case 0, 1, 2:
			now += rng.Int64N(int64(3 * time.Second))
		case 3:
			now -= rng.Int64N(int64(2 * limiter.MaxClockStepBack)) // a clock stepped back
		}
	}
	var differ int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM `+q+`.counters m FULL JOIN `+q+`.counters o
		ON substr(m.key, 5) = substr(o.key, 4) AND substr(o.key, 1, 3) = 'one'
		WHERE substr(m.key, 1, 4) = 'many' AND (o.key IS NULL OR (m.stamp, m.count, m.prev, m.expires_at) <> (o.stamp, o.count, o.prev, o.expires_at))`).Scan(&differ)
	if err != nil {
		t.Fatal(err)
	}
	if differ != 0 {
		t.Errorf("%d of take's rows differ from take_one's twins", differ)
	}
}
