package descriptor

import (
	"fmt"
	"strings"
	"time"
)

// Unit is the time unit of a rate limit. Its values are those of Envoy's
// envoy.service.ratelimit.v3.RateLimitResponse.RateLimit.Unit enum, so a
// conversion either way is a plain cast.
type Unit int32

// Units, numbered as in Envoy's RateLimitResponse.RateLimit.Unit.
const (
	UnitUnknown Unit = 0
	UnitSecond  Unit = 1
	UnitMinute  Unit = 2
	UnitHour    Unit = 3
	UnitDay     Unit = 4
	UnitMonth   Unit = 5
	UnitYear    Unit = 6
	UnitWeek    Unit = 7
)

// UnitNames lists the configuration names of every valid unit, shortest
// period first (for error messages).
const UnitNames = "second, minute, hour, day, week, month, year"

// unitNames are the names by Unit value; UnitNames lists the same names.
var unitNames = [...]string{"unknown", "second", "minute", "hour", "day", "month", "year", "week"}

// unitPeriods are the lengths envoyproxy/ratelimit uses: a month is 30 days
// and a year 365 days; windows are aligned to multiples of them since the
// Unix epoch.
var unitPeriods = [...]time.Duration{
	0,
	time.Second,
	time.Minute,
	time.Hour,
	24 * time.Hour,
	30 * 24 * time.Hour,
	365 * 24 * time.Hour,
	7 * 24 * time.Hour,
}

// ParseUnit returns the unit named s ("second", "minute", "hour", "day",
// "week", "month" or "year"), ignoring case as envoyproxy/ratelimit does.
func ParseUnit(s string) (Unit, bool) {
	var u Unit
	return u, u.UnmarshalText([]byte(s)) == nil
}

// UnmarshalText sets u to the unit named text, ignoring case; the error
// lists the names.
func (u *Unit) UnmarshalText(text []byte) error {
	for i := UnitSecond; i <= UnitWeek; i++ {
		if strings.EqualFold(string(text), unitNames[i]) {
			*u = i
			return nil
		}
	}
	return fmt.Errorf("unknown unit %q: expected one of %s", text, UnitNames)
}

// MarshalText returns the configuration name of u, or "" for UnitUnknown
// (not set); any other invalid unit is an error.
func (u Unit) MarshalText() ([]byte, error) {
	switch {
	case u.Valid():
		return []byte(unitNames[u]), nil
	case u == UnitUnknown:
		return nil, nil
	}
	return nil, fmt.Errorf("unknown unit %d", int32(u))
}

// Valid reports whether u is one of the seven units.
func (u Unit) Valid() bool { return u >= UnitSecond && u <= UnitWeek }

// String returns the configuration name of u, e.g. "minute".
func (u Unit) String() string {
	if u.Valid() {
		return unitNames[u]
	}
	return "unknown"
}

// Period returns the length of u (a month is 30 days, a year 365 days), or 0
// when u is not valid.
func (u Unit) Period() time.Duration {
	if u.Valid() {
		return unitPeriods[u]
	}
	return 0
}
