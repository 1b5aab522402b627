package pgstore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/pgstore"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// A monthly quota kept in PostgreSQL: exact across replicas and restarts.
func Example() {
	ctx := context.Background()
	s, err := pgstore.Open(ctx, pgstore.Settings{
		DSNEnv:      "EXTAUTHZ_PG_DSN", // e.g. postgres://extauthz@db/app?sslmode=verify-full
		AutoMigrate: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	month := limiter.Limit{Requests: 10_000, Period: 30 * 24 * time.Hour}
	reqs := []limiter.Request{{Key: "plan/customer-42", Limit: month, Hits: 1}}
	res := make([]limiter.Result, 1)
	if err := s.Take(ctx, limiter.CountAll, reqs, res); err != nil {
		fmt.Println(err) // the failover chain decides what to do
		return
	}
	fmt.Println(res[0].Allowed, res[0].Remaining)
}
