package memstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/limiter"
)

func Example() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s, err := memstore.New(memstore.Options{MaxKeys: 10_000, Now: func() time.Time { return now }})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()

	reqs := []limiter.Request{{Key: "edge/remote_address=10.0.0.1", Limit: limiter.Limit{Requests: 2, Period: time.Second}, Hits: 1}}
	res := make([]limiter.Result, len(reqs))
	for range 3 {
		if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("allowed=%v remaining=%d\n", res[0].Allowed, res[0].Remaining)
	}
	fmt.Println("keys:", s.Len())
	// Output:
	// allowed=true remaining=1
	// allowed=true remaining=0
	// allowed=false remaining=0
	// keys: 1
}
