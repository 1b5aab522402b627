package limiter

import (
	"errors"
	"testing"
	"time"
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
