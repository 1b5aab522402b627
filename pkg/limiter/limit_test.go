package limiter

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/field"
)

func TestParseAlgorithm(t *testing.T) {
	for _, a := range []Algorithm{FixedWindow, SlidingWindow, TokenBucket} {
		var got Algorithm
		err := got.UnmarshalText([]byte(a.String()))
		if err != nil || got != a {
			t.Errorf("UnmarshalText(%q): got %v, %v, want %v", a.String(), got, err, a)
		}
	}
	var a Algorithm
	if err := a.UnmarshalText([]byte("leaky_bucket")); !errors.Is(err, ErrUnknownAlgorithm) {
		t.Errorf("UnmarshalText(leaky_bucket): got error %v, want ErrUnknownAlgorithm", err)
	}
	if got, want := Algorithm(9).String(), "algorithm(9)"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		limit   Limit
		wantErr error
	}{
		{name: "fixed", limit: Limit{Requests: 10, Period: time.Second}},
		{name: "zero requests", limit: Limit{Requests: 0, Period: time.Second}},
		{name: "bucket with burst", limit: Limit{Requests: 10, Period: time.Second, Burst: 20, Algorithm: TokenBucket}},
		{name: "negative requests", limit: Limit{Requests: -1, Period: time.Second}, wantErr: ErrInvalidLimit},
		{name: "zero period", limit: Limit{Requests: 1}, wantErr: ErrInvalidLimit},
		{name: "negative burst", limit: Limit{Requests: 1, Period: time.Second, Burst: -1, Algorithm: TokenBucket}, wantErr: ErrInvalidLimit},
		{name: "burst on a window", limit: Limit{Requests: 1, Period: time.Second, Burst: 2, Algorithm: SlidingWindow}, wantErr: ErrInvalidLimit},
		{name: "unknown algorithm", limit: Limit{Requests: 1, Period: time.Second, Algorithm: 3}, wantErr: ErrUnknownAlgorithm},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.limit.Validate()
			if !errors.Is(err, tc.wantErr) || (err == nil) != (tc.wantErr == nil) {
				t.Errorf("got error %v, want %v", err, tc.wantErr)
			}
		})
	}
}

func TestCapacityAndString(t *testing.T) {
	tests := []struct {
		limit        Limit
		wantCapacity int64
		wantString   string
	}{
		{limit: Limit{Requests: 100, Period: time.Minute}, wantCapacity: 100, wantString: "100/1m0s fixed_window"},
		{limit: Limit{Requests: 10, Period: time.Second, Algorithm: TokenBucket}, wantCapacity: 10, wantString: "10/1s token_bucket"},
		{limit: Limit{Requests: 10, Period: time.Second, Burst: 50, Algorithm: TokenBucket}, wantCapacity: 50, wantString: "10/1s token_bucket burst=50"},
	}
	for _, tc := range tests {
		if got := tc.limit.Capacity(); got != tc.wantCapacity {
			t.Errorf("%v: got capacity %d, want %d", tc.limit, got, tc.wantCapacity)
		}
		if got := tc.limit.String(); got != tc.wantString {
			t.Errorf("got %q, want %q", got, tc.wantString)
		}
	}
}

// TestValidateConfig: the bounds every store honours exactly (issue 16,
// finding 6): counts up to 2^53-1, and a token bucket whose burst is
// admitted in full (its tolerance within MaxTolerance).
func TestValidateConfig(t *testing.T) {
	year := 365 * 24 * time.Hour
	tb := func(r int64, p time.Duration, b int64) Limit {
		return Limit{Requests: r, Period: p, Burst: b, Algorithm: TokenBucket}
	}
	for _, tc := range []struct {
		name  string
		l     Limit
		path  string // "" when valid
		inMsg string
	}{
		{name: "ordinary", l: Limit{Requests: 100, Period: time.Minute}},
		{name: "requests at MaxCount", l: Limit{Requests: MaxCount, Period: time.Minute}},
		{name: "requests beyond MaxCount", l: Limit{Requests: MaxCount + 1, Period: time.Minute}, path: "requests_per_unit", inMsg: "2^53-1"},
		{name: "burst 1e16", l: tb(1000, time.Minute, 1e16), path: "burst", inMsg: "2^53-1"},
		{name: "burst at the tolerance", l: tb(10, year, 1462), path: ""},
		{name: "10/year burst 5000", l: tb(10, year, 5000), path: "burst", inMsg: "set burst to 1462 or less"},
		{name: "1/week burst 2^32-1", l: tb(1, 7*24*time.Hour, 1<<32-1), path: "burst", inMsg: "at most 7625 tokens"},
		{name: "fixed window ignores tolerance", l: Limit{Requests: 1, Period: year}},
		{name: "zero requests", l: tb(0, year, 5000)},
		{name: "invalid limit still invalid", l: Limit{Requests: -1, Period: time.Minute}, path: "", inMsg: "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.ValidateConfig()
			if tc.path == "" && tc.inMsg == "" {
				if err != nil {
					t.Fatalf("ValidateConfig(%v) = %v, want nil", tc.l, err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidLimit) || !strings.Contains(err.Error(), tc.inMsg) {
				t.Fatalf("ValidateConfig(%v) = %v, want ErrInvalidLimit mentioning %q", tc.l, err, tc.inMsg)
			}
			var fe *field.Error
			if tc.path != "" && (!errors.As(err, &fe) || fe.Path != tc.path) {
				t.Errorf("ValidateConfig(%v) = %#v, want a field error at %q", tc.l, err, tc.path)
			}
		})
	}
}

// TestMaxBurstIsAdmitted: a bucket of MaxBurst tokens admits exactly that
// many hits at once, and one more token would be capped.
func TestMaxBurstIsAdmitted(t *testing.T) {
	year := 365 * 24 * time.Hour
	l := Limit{Requests: 10, Period: year, Algorithm: TokenBucket}
	l.Burst = l.MaxBurst()
	if l.Burst != 1462 {
		t.Fatalf("MaxBurst of 10/year = %d, want 1462", l.Burst)
	}
	var s State
	if r := l.Apply(&s, t0, l.Burst); !r.Allowed {
		t.Errorf("a full burst of %d: %+v, want admitted", l.Burst, r)
	}
	l.Burst++
	if err := l.ValidateConfig(); err == nil {
		t.Errorf("burst %d: ValidateConfig = nil, want an error", l.Burst)
	}
}
