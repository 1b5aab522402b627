package server

import (
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// TestAlternatingLimitsDoNotShareAWindow alternates requests of one counter
// between two effective limits of different units (issue 16, finding 3):
// sharing one counter, each request found the other unit's window stale and
// restarted it, so every request was admitted. Each limit must hold.
func TestAlternatingLimitsDoNotShareAWindow(t *testing.T) {
	e := newEnv(t, Settings{})
	set, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge", Descriptors: []descriptor.Node{
		// One counter for every plan (share_threshold), whose tier sets the limit.
		{Key: "plan", Value: "*", ShareThreshold: true, RateLimit: &descriptor.RateLimit{
			Unit: descriptor.UnitMinute, RequestsPerUnit: 2,
			Tiers: &descriptor.Tiers{Key: "plan",
				Limits: map[string]limiter.Limit{"gold": {Requests: 3, Period: time.Hour}},
				Units:  map[string]descriptor.Unit{"gold": descriptor.UnitHour}}}},
		{Key: "remote_address", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: 2}},
	}}}, descriptor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(set, Settings{}, []byte("config: test\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Swap(snap)

	tests := []struct {
		name string
		a, b *rlsv3.RateLimitRequest
	}{
		{name: "tier of another unit",
			a: request("edge", desc("plan", "free")), b: request("edge", desc("plan", "gold"))},
		{name: "Envoy overrides of two units",
			a: request("edge", withOverride(desc("remote_address", "192.0.2.1"), 2, typev3.RateLimitUnit_MINUTE, 0)),
			b: request("edge", withOverride(desc("remote_address", "192.0.2.1"), 3, typev3.RateLimitUnit_HOUR, 0))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			admitted := 0
			for i := range 60 {
				req := tc.a
				if i%2 == 1 {
					req = tc.b
				}
				if e.call(t, req).GetOverallCode() == rlsv3.RateLimitResponse_OK {
					admitted++
				}
			}
			if admitted > 2+3 {
				t.Errorf("alternating 2/minute and 3/hour: admitted %d of 60 at one instant, want at most 5", admitted)
			}
		})
	}
}
