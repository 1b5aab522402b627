package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// takeOptions are the flags of the take command.
type takeOptions struct {
	addr      string
	algorithm limiter.Algorithm
	n, keys   int
	callers   int
	general   bool
	raw       string
}

// take makes n one-request redisstore Takes, serial or from -callers
// concurrent callers (or the raw commands of -raw), on the redis-server at
// -redis-addr: a fixed, load-independent workload whose redis-server
// instructions bench/redis-cost.sh counts.
func take(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseTake(args, stderr)
	if err != nil {
		return err
	}
	switch o.raw {
	case "":
		return takeStore(ctx, o)
	case "ping", "incr":
		return takeRaw(ctx, o)
	}
	return fmt.Errorf("-raw %q: want ping or incr", o.raw)
}

func parseTake(args []string, stderr io.Writer) (takeOptions, error) {
	var o takeOptions
	fs := flag.NewFlagSet("take", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "redis-addr", "", "host:port of the redis-server (required)")
	alg := fs.String("algorithm", "fixed_window", "fixed_window, sliding_window or token_bucket")
	fs.IntVar(&o.n, "n", 1000, "calls")
	fs.IntVar(&o.keys, "keys", 1000, "distinct keys cycled through")
	fs.IntVar(&o.callers, "callers", 1, "concurrent callers sharing the n calls; above 1 the store runs on its pipeline (auto_pipeline), which merges a batch's calls")
	fs.BoolVar(&o.general, "general", false, "turn the local cache on, which sends every call to the general script (take.lua)")
	fs.StringVar(&o.raw, "raw", "", "instead of Takes: ping (PING), or incr (INCRBY and PEXPIRE NX in one pipeline, a fixed window without a script)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if err := o.algorithm.UnmarshalText([]byte(*alg)); err != nil {
		return o, fmt.Errorf("-algorithm: %w", err)
	}
	if o.addr == "" || o.n < 1 || o.keys < 1 || o.callers < 1 {
		return o, errors.New("take needs -redis-addr, and positive -n, -keys and -callers")
	}
	return o, nil
}

func takeStore(ctx context.Context, o takeOptions) error {
	cfg := redisstore.Config{URL: redisstore.URL("redis://" + o.addr + "/0")}
	cfg.LocalCache.Enabled = o.general
	cfg.AutoPipeline = new(o.callers > 1)
	// A redis-server under valgrind answers far slower than the sidecar
	// defaults allow.
	cfg.Timeouts = redisstore.Timeouts{Read: 10 * time.Second, Write: 10 * time.Second}
	s, err := redisstore.Open(cfg, redisstore.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	l := limiter.Limit{Requests: 1_000_000_000, Period: time.Minute, Algorithm: o.algorithm}
	var wg sync.WaitGroup
	errs := make([]error, o.callers)
	for c := range o.callers {
		wg.Go(func() {
			reqs, res := make([]limiter.Request, 1), make([]limiter.Result, 1)
			for i := c; i < o.n; i += o.callers {
				reqs[0] = limiter.Request{Key: "k" + strconv.Itoa(i%o.keys), Limit: l, Hits: 1}
				if err := s.Take(ctx, limiter.CountAll, reqs, res); err != nil {
					errs[c] = err
					return
				}
				if !res[0].Allowed {
					errs[c] = fmt.Errorf("call %d refused: %+v", i, res[0])
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func takeRaw(ctx context.Context, o takeOptions) error {
	c := redis.NewClient(&redis.Options{Addr: o.addr, DisableIdentity: true, ReadTimeout: 10 * time.Second})
	defer c.Close()
	for i := range o.n {
		if o.raw == "ping" {
			if err := c.Ping(ctx).Err(); err != nil {
				return err
			}
			continue
		}
		k := "k" + strconv.Itoa(i%o.keys) + ":" + strconv.FormatInt(time.Now().Unix()/60, 10)
		p := c.Pipeline()
		p.IncrBy(ctx, k, 1)
		p.Do(ctx, "pexpire", k, 60_000, "nx")
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
	}
	return nil
}
