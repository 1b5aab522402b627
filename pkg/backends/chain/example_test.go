package chain_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/chain"
	"github.com/extauthz/extauthz/pkg/limiter"
)

func ExampleFairShare() {
	// Three replicas share Redis; while it is away each enforces a third.
	fmt.Println(chain.FairShare(limiter.Limit{Requests: 100, Period: time.Minute}, 3))
	// Never below one hit per replica.
	fmt.Println(chain.FairShare(limiter.Limit{Requests: 2, Period: time.Second}, 5))
	// Output:
	// 33/1m0s fixed_window
	// 1/1s fixed_window
}

// down is a store whose backend is unreachable.
type down struct{}

func (down) Take(context.Context, limiter.Mode, []limiter.Request, []limiter.Result) error {
	return errors.New("dial tcp 127.0.0.1:6379: connection refused")
}

func ExampleSettings_FailurePolicy() {
	c, err := chain.New(chain.Options{Backends: []chain.Backend{{Name: "redis", Store: down{}}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	s := chain.Settings{DomainFailureModes: map[string]chain.FailureMode{"payments": chain.FailClosed, "search": chain.FailOpen}}
	policy := s.FailurePolicy()
	reqs := []limiter.Request{{Key: "k", Limit: limiter.Limit{Requests: 10, Period: time.Second}, Hits: 1}}
	res := make([]limiter.Result, len(reqs))
	err = c.Take(context.Background(), limiter.CountAll, reqs, res)
	fmt.Println(err, errors.Is(err, chain.ErrUnavailable))
	for _, domain := range []string{"payments", "search", "edge"} {
		fmt.Println(domain, policy.For(domain))
	}
	// Output:
	// chain: no backend available: backend redis: dial tcp 127.0.0.1:6379: connection refused true
	// payments closed
	// search open
	// edge envoy
}
