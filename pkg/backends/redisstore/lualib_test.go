package redisstore

import (
	"context"
	"math/big"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/internal/redistest"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// TestLuaLib checks lib.lua, which every script shares, against exact
// integer arithmetic at the edges random calls rarely reach: remainders of
// 0 and 1 (the ceiling), products past 2^52 (the long multiplication),
// negative dividends (undo.lua) and the clock step-back bound, all within
// the exactness bounds of README.md (results below 2^53).
func TestLuaLib(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, DisableIdentity: true})
	t.Cleanup(func() { _ = client.Close() })
	run := func(t *testing.T, body string, args ...int64) []int64 {
		t.Helper()
		argv := make([]interface{}, len(args))
		for i, a := range args {
			argv[i] = strconv.FormatInt(a, 10)
		}
		got, err := client.Eval(context.Background(), luaSource(libLua, body), nil, argv...).Int64Slice()
		if err != nil {
			t.Fatalf("EVAL %s %v: %v", body, args, err)
		}
		return got
	}
	const argn = "local a = {} for i = 1, #ARGV do a[i] = tonumber(ARGV[i]) end\n"

	t.Run("divmod", func(t *testing.T) {
		for _, c := range [][2]int64{{0, 7}, {14, 7}, {15, 7}, {20, 7}, {-1, 1000}, {-1000, 1000}, {-1001, 1000}, {1<<53 - 1, 3}, {1<<53 - 1, 1<<52 + 1}} {
			got := run(t, argn+"return {divmod(a[1], a[2])}", c[0], c[1])
			q, r := new(big.Int).DivMod(big.NewInt(c[0]), big.NewInt(c[1]), new(big.Int)) // Euclidean: r >= 0
			if len(got) != 2 || got[0] != q.Int64() || got[1] != r.Int64() {
				t.Errorf("divmod(%d, %d) = %v, want [%d %d]", c[0], c[1], got, q, r)
			}
		}
	})

	t.Run("muldiv", func(t *testing.T) {
		for _, c := range [][3]int64{
			{0, 5, 7}, {3, 5, 7}, {7, 2, 7}, {1, 1, 1}, {8, 1, 7}, {3, 5, 1 << 52},
			{1<<40 + 1, 1 << 13, 3}, {123456789, 987654321987, 1000000007},
			{limiter.MaxCount, 3_600_000_000_000, limiter.MaxCount - 1},
			{1_000_000_007, 3_600_000_000_000, 1_000_000_009}, {1<<52 + 1, 1, 1<<52 + 1},
		} {
			got := run(t, argn+"return {muldiv(a[1], a[2], a[3]), muldiv(a[1], a[2], a[3], true)}", c[0], c[1], c[2])
			p := new(big.Int).Mul(big.NewInt(c[0]), big.NewInt(c[1]))
			q, r := new(big.Int).DivMod(p, big.NewInt(c[2]), new(big.Int))
			up := q.Int64()
			if r.Sign() > 0 {
				up++
			}
			if len(got) != 2 || got[0] != q.Int64() || got[1] != up {
				t.Errorf("muldiv(%d, %d, %d) floor, ceil = %v, want [%d %d]", c[0], c[1], c[2], got, q, up)
			}
		}
	})

	t.Run("window", func(t *testing.T) {
		const us = 1_700_000_000_000_000 // a window start for every period below
		step := int64(limiter.MaxClockStepBack)
		for _, c := range []struct{ us, sub, p, ahead int64 }{
			{us, 0, 1e9, 0}, {us, 1, 1e9, 0}, {us + 999_999, 999, 1e9, 0}, {us + 12, 345, 1001, 0},
			{us + 5, 0, 999_999_999, 0}, {us + 1, 0, 1_000, 0},
			// A stored window up to MaxClockStepBack ahead is the current one.
			{us, 0, 1e9, step / 1e9}, {us, 0, 1e9, step/1e9 + 1},
			{us, 1, 1e9, step/1e9 + 1}, {us + 1, 0, 1e9, step/1e9 + 1},
			{us + 12, 345, 1001, 1}, {us + 12, 345, 1001, step/1001 + 1}, {us + 12, 345, 1001, step/1001 + 2},
		} {
			now := new(big.Int).Add(new(big.Int).Mul(big.NewInt(c.us), big.NewInt(1000)), big.NewInt(c.sub))
			w, e := new(big.Int).DivMod(now, big.NewInt(c.p), new(big.Int))
			wantW, wantEnd := w.Int64(), c.p-e.Int64()
			body, args := argn+"return {window(a[1], a[2], a[3], false)}", []int64{c.us, c.sub, c.p}
			if c.ahead > 0 {
				s := wantW + c.ahead
				body, args = argn+"return {window(a[1], a[2], a[3], a[4])}", append(args, s)
				if (s-wantW-1)*c.p+wantEnd <= step {
					wantW, wantEnd = s, c.p
				}
			}
			if got := run(t, body, args...); len(got) != 2 || got[0] != wantW || got[1] != wantEnd {
				t.Errorf("window(%d us + %d ns, period %d, %d ahead) = %v, want [%d %d]", c.us, c.sub, c.p, c.ahead, got, wantW, wantEnd)
			}
		}
	})
}
