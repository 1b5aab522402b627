package chain

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A backend's call_timeout replaces breaker.call_timeout for its calls
// only: a hung store is cut at its own timeout, not the global one.
func TestBackendCallTimeoutOverride(t *testing.T) {
	for _, tc := range []struct {
		name     string
		override time.Duration
		min, max time.Duration
	}{
		{"global", 0, 20 * time.Millisecond, 150 * time.Millisecond},
		{"longer", 300 * time.Millisecond, 300 * time.Millisecond, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hung := &fakeStore{}
			hung.set(nil, true)
			c := newChain(t, Options{
				Backends: []Backend{{Name: "slow", Store: hung, BackendSettings: BackendSettings{CallTimeout: tc.override}}},
				Settings: Settings{Breaker: BreakerSettings{CallTimeout: 20 * time.Millisecond}, HealthCheck: HealthSettings{Disabled: true}},
			})
			start := time.Now()
			err := take(t, c)
			took := time.Since(start)
			if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Take: %v, want ErrUnavailable wrapping a deadline", err)
			}
			if took < tc.min || took > tc.max {
				t.Errorf("Take gave up after %v, want between %v and %v", took, tc.min, tc.max)
			}
		})
	}
}

// A store that bounds its own calls gets the backend's call timeout once
// and no deadline per call; one that declines gets the usual context.
func TestStoreBoundsItsCalls(t *testing.T) {
	for _, tc := range []struct {
		name        string
		accept      bool
		override    time.Duration
		wantBound   time.Duration
		wantContext bool
	}{
		{"bounds", true, 0, 20 * time.Millisecond, false},
		{"bounds the backend's own timeout", true, 300 * time.Millisecond, 300 * time.Millisecond, false},
		{"declines", false, 0, 20 * time.Millisecond, true},
		{"no timeout", true, -1, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &boundingStore{accept: tc.accept}
			c := newChain(t, Options{
				Backends: []Backend{{Name: "redis", Store: st, BackendSettings: BackendSettings{CallTimeout: tc.override}}},
				Settings: Settings{Breaker: BreakerSettings{CallTimeout: 20 * time.Millisecond}, HealthCheck: HealthSettings{Disabled: true}},
			})
			if st.bound != tc.wantBound {
				t.Errorf("BoundCalls got %v, want %v", st.bound, tc.wantBound)
			}
			if err := take(t, c); err != nil {
				t.Fatal(err)
			}
			if st.hadDeadline != tc.wantContext {
				t.Errorf("the store's context had a deadline: %v, want %v", st.hadDeadline, tc.wantContext)
			}
		})
	}
}

func TestBackendCallTimeoutNotOnLocal(t *testing.T) {
	err := BackendSettings{CallTimeout: time.Millisecond}.Validate(0, "memory", true)
	if err == nil {
		t.Fatal("Validate: a local backend accepted call_timeout")
	}
}
