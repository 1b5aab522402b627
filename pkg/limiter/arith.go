package limiter

import (
	"math"
	"math/bits"
)

// Integer helpers for the algorithms. All time arithmetic is in int64
// nanoseconds; products that can exceed 64 bits go through 128-bit
// intermediates (math/bits), and sums and products saturate instead of
// wrapping, so absurd inputs give absurd-but-monotonic answers, never
// panics or sign flips.

// floorDiv returns q = floor(a/b) and r = a - q*b (0 <= r < b) for b > 0.
func floorDiv(a, b int64) (q, r int64) {
	q, r = a/b, a%b
	if r < 0 {
		q--
		r += b
	}
	return q, r
}

// satAdd returns a+b, saturated to the int64 range.
func satAdd(a, b int64) int64 {
	c := a + b
	if (c > a) != (b > 0) {
		if b > 0 {
			return math.MaxInt64
		}
		return math.MinInt64
	}
	return c
}

// satSub returns a-b, saturated to the int64 range.
func satSub(a, b int64) int64 {
	if b == math.MinInt64 {
		if a >= 0 {
			return math.MaxInt64
		}
		return a - b
	}
	return satAdd(a, -b)
}

// satMul returns a*b, saturated to the int64 range.
func satMul(a, b int64) int64 {
	if a >= 0 && b >= 0 { // the usual case, without a division
		hi, lo := bits.Mul64(uint64(a), uint64(b))
		if hi != 0 || lo > math.MaxInt64 {
			return math.MaxInt64
		}
		return int64(lo)
	}
	c := a * b
	if c/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
		if (a < 0) != (b < 0) {
			return math.MinInt64
		}
		return math.MaxInt64
	}
	return c
}

// mulDiv returns floor(a*b/c) for a, b >= 0 and c > 0, computed exactly with a
// 128-bit product and saturated at math.MaxInt64, and whether the division
// left a remainder.
func mulDiv(a, b, c int64) (q int64, inexact bool) {
	if c <= 0 { // not reached by the algorithms; keeps bits.Div64 from panicking
		return math.MaxInt64, true
	}
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	if hi >= uint64(c) {
		return math.MaxInt64, true
	}
	uq, ur := bits.Div64(hi, lo, uint64(c))
	if uq > math.MaxInt64 {
		return math.MaxInt64, true
	}
	return int64(uq), ur != 0
}

// mulDivCeil returns ceil(a*b/c) for a, b >= 0 and c > 0, saturated.
func mulDivCeil(a, b, c int64) int64 {
	q, inexact := mulDiv(a, b, c)
	if inexact && q < math.MaxInt64 {
		q++
	}
	return q
}

// mulAddSub returns a*b + c - d for a, b, c, d >= 0 with a*b + c >= d,
// computed exactly with a 128-bit intermediate and saturated at
// math.MaxInt64.
func mulAddSub(a, b, c, d int64) int64 {
	hi, lo := bits.Mul64(uint64(a), uint64(b))
	var carry, borrow uint64
	lo, carry = bits.Add64(lo, uint64(c), 0)
	hi += carry
	lo, borrow = bits.Sub64(lo, uint64(d), 0)
	hi -= borrow
	if hi != 0 || lo > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(lo)
}
