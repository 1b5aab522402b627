package redisstore_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// Open a store on a standalone Redis and count one hit against a limit of
// 100 per minute. (Not run: it needs a Redis server.)
func ExampleOpen() {
	s, err := redisstore.Open(redisstore.Config{URL: "redis://127.0.0.1:6379/0"}, redisstore.Options{
		LocalCacheSize: 10_000,
		OnCall: func(d time.Duration, err error) {
			// export d and redisstore.ErrorKind(err) as metrics
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	reqs := []limiter.Request{{Key: "f4:edge...", Limit: limiter.Limit{Requests: 100, Period: time.Minute}, Hits: 1}}
	res := make([]limiter.Result, len(reqs))
	if err := s.Take(context.Background(), limiter.CountAll, reqs, res); err != nil {
		log.Fatal(err)
	}
	fmt.Println(res[0].Allowed, res[0].Remaining)
}

// The Redis key of a counter, for redis-cli.
func ExampleKey() {
	fmt.Println(redisstore.Key("extauthz:", "f4:edge"))
	// Output: extauthz:{ae2c94b2}f4:edge
}
