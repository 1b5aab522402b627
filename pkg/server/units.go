package server

import (
	"math"
	"time"
)

// clampUint32 converts n to the uint32 the proto fields carry, saturating.
func clampUint32(n int64) uint32 {
	switch {
	case n <= 0:
		return 0
	case n >= math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(n)
}

// ceilSeconds rounds d up to whole seconds (0 stays 0).
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
