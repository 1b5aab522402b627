package server

import (
	"testing"

	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// A rule with rate_limit.lease hands its settings to the store with every
// request (limiter.Request.Lease); other rules and overrides hand nil.
func TestLeasePassedToStore(t *testing.T) {
	e := newEnv(t, Settings{})
	ls := &limiter.Lease{Fraction: 0.5}
	rules, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "hot", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: 100, Lease: ls}},
		{Key: "cold", RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: 100}},
	}}}, descriptor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(rules, Settings{}, []byte("config: test\n"))
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Swap(snap)
	e.call(t, request("edge", desc("hot", "a"), desc("cold", "b")))
	calls := e.store.takes()
	if len(calls) != 1 || len(calls[0].reqs) != 2 {
		t.Fatalf("takes = %+v, want one call of two requests", calls)
	}
	if got := calls[0].reqs[0].Lease; got != ls {
		t.Errorf("leased rule's request carries %p, want the rule's %p", got, ls)
	}
	if got := calls[0].reqs[1].Lease; got != nil {
		t.Errorf("plain rule's request carries lease %+v", got)
	}
}
