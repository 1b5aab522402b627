package ratelimit_test

import (
	"context"
	"testing"

	"github.com/extauthz/extauthz/ratelimit"
)

type otherKey struct{}

func TestContext(t *testing.T) {
	parent, cancel := context.WithCancel(context.WithValue(context.Background(), otherKey{}, "v"))
	d := ratelimit.Decision{Allowed: true, Statuses: []ratelimit.Status{{Counted: true, Rule: "r"}}}
	ctx := ratelimit.NewContext(parent, d)
	got, ok := ratelimit.FromContext(ctx)
	if !ok || got.Statuses[0].Rule != "r" {
		t.Errorf("FromContext = %+v, %v", got, ok)
	}
	if ctx.Value(otherKey{}) != "v" {
		t.Error("parent's value lost")
	}
	if _, ok := ratelimit.FromContext(parent); ok {
		t.Error("decision found in the parent")
	}
	// Cancellation flows through the decision's context to its children.
	child, cancelChild := context.WithCancel(ctx)
	defer cancelChild()
	cancel()
	<-child.Done()
	if ctx.Err() != context.Canceled {
		t.Errorf("Err = %v, want Canceled", ctx.Err())
	}
}
