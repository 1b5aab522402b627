package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
	"unsafe"

	"github.com/redis/go-redis/v9"

	"github.com/extauthz/extauthz/pkg/backends/redisstore/internal/pipe"
	"github.com/extauthz/extauthz/pkg/limiter"
)

// sentinelOptions returns the options of newPipe for the master that fo's
// sentinels name: each dial asks them in turn (GetMasterAddrByName) and
// dials the answer. The pipe dials afresh after a READONLY reply, so a
// failover is followed at the first write to the demoted master.
func sentinelOptions(fo *redis.FailoverOptions) *redis.Options {
	o := &redis.Options{
		Username: fo.Username, Password: fo.Password, CredentialsProviderContext: fo.CredentialsProviderContext,
		DB: fo.DB, TLSConfig: fo.TLSConfig,
		DialTimeout: fo.DialTimeout, ReadTimeout: fo.ReadTimeout, WriteTimeout: fo.WriteTimeout,
	}
	dial := fo.Dialer
	if dial == nil {
		dial = redis.NewDialer(o)
	}
	o.Dialer = func(ctx context.Context, _, _ string) (net.Conn, error) {
		var errs []error
		for _, a := range fo.SentinelAddrs {
			sc := redis.NewSentinelClient(&redis.Options{
				Addr: a, Dialer: fo.Dialer, TLSConfig: fo.TLSConfig,
				Username: fo.SentinelUsername, Password: fo.SentinelPassword,
				DialTimeout: fo.DialTimeout, ReadTimeout: fo.ReadTimeout, WriteTimeout: fo.WriteTimeout,
				MaxRetries: -1, DisableIdentity: true,
			})
			hp, err := sc.GetMasterAddrByName(ctx, fo.MasterName).Result()
			_ = sc.Close()
			if err != nil {
				errs = append(errs, fmt.Errorf("sentinel %s: master %q: %w", a, fo.MasterName, err))
				continue
			}
			return dial(ctx, "tcp", net.JoinHostPort(hp[0], hp[1]))
		}
		return nil, errors.Join(errs...)
	}
	return o
}

// newPipe returns the pipelining client of the server reached with o:
// go-redis's dialer (TLS included) or o.Dialer, then AUTH and SELECT as
// go-redis would send them.
func newPipe(o *redis.Options) (*pipe.Client, error) {
	network, addr := o.Network, o.Addr
	if network == "" {
		network = "tcp"
	}
	dial := o.Dialer
	if dial == nil {
		dial = redis.NewDialer(o)
	}
	return pipe.New(pipe.Config{
		Dial: func(ctx context.Context) (net.Conn, error) { return dial(ctx, network, addr) },
		Setup: func(ctx context.Context) ([][]string, error) {
			user, pass := o.Username, o.Password
			if o.CredentialsProviderContext != nil {
				var err error
				if user, pass, err = o.CredentialsProviderContext(ctx); err != nil {
					return nil, err
				}
			}
			var cmds [][]string
			switch {
			case pass != "" && user != "":
				cmds = append(cmds, []string{"auth", user, pass})
			case pass != "":
				cmds = append(cmds, []string{"auth", pass})
			}
			if o.DB != 0 {
				cmds = append(cmds, []string{"select", strconv.Itoa(o.DB)})
			}
			return cmds, nil
		},
		DialTimeout:  o.DialTimeout,
		ReadTimeout:  o.ReadTimeout,
		WriteTimeout: o.WriteTimeout,
	})
}

// pipeOne is takeOne through the pipe, which merges it with the batch's
// other calls of its script (oneMerged): the key and ARGV[1] share one
// allocation, and the reply is decoded in place.
func (s *Store) pipeOne(ctx context.Context, mode limiter.Mode, r *limiter.Request, res *limiter.Result, now time.Time, mark *int64) error {
	a := r.Limit.Algorithm
	kl := keyLen(s.prefix, r.Key)
	b := appendKey(make([]byte, 0, kl+8*8), s.prefix, r.Key)
	b = appendOneArgv(b, r, mode == limiter.CountAll || r.Shadow, now, s.opts)
	// b is never written again.
	key := unsafe.String(unsafe.SliceData(b), kl)
	argv := unsafe.String(&b[kl], len(b)-kl)
	return s.pipeEval(ctx, oneMerged[a].SHA, &oneMerged[a], oneSources[a], []string{key}, argv, func(packed string) error {
		return decodeOne(packed, r, res, mark)
	})
}

// BoundCalls makes every later Take give up after d, with an error
// wrapping context.DeadlineExceeded, as a context with that timeout would
// but without allocating one per call; d <= 0 removes the bound. It
// reports whether the store bounds its calls: only the pipeline can
// (Config.AutoPipeline, with a url or sentinel). The failover chain gives
// it the call timeout when it is built.
func (s *Store) BoundCalls(d time.Duration) bool {
	if s.pipe == nil {
		return false
	}
	s.bound.Store(int64(max(d, 0)))
	return true
}

// pipeEval runs "EVALSHA hash numkeys keys... argv" through the pipe
// (merged with the batch's other calls of the script when merge is set: a
// one-request script, each.lua), and EVAL with source when the server lost
// the script, and passes the packed reply to decode. Both together are
// bounded by BoundCalls's bound.
func (s *Store) pipeEval(ctx context.Context, hash string, merge *pipe.Script, source string, keys []string, argv string, decode func(packed string) error) error {
	fn := func(r pipe.Reply) error {
		if r.Kind != '$' || r.Nil {
			return fmt.Errorf("%w: got a reply of type %q, want a string", ErrBadReply, r.Kind)
		}
		return decode(unsafe.String(unsafe.SliceData(r.Str), len(r.Str))) // valid during fn
	}
	bound := time.Duration(s.bound.Load())
	var start time.Time
	if bound > 0 {
		start = time.Now() // for what a retry has left
	}
	var buf [8]string
	var err error
	if merge != nil && len(keys) == 1 {
		err = s.pipe.DoScript(ctx, bound, merge, keys[0], argv, fn)
	} else {
		err = s.pipe.DoWithin(ctx, bound, scriptArgs(buf[:0], "evalsha", hash, keys, argv), fn)
	}
	if !isNoScript(err) {
		return err
	}
	s.scriptLoaded()
	left := bound
	if bound > 0 {
		if left = bound - time.Since(start); left <= 0 {
			return fmt.Errorf("%w: %w", pipe.ErrNotSent, &pipe.TimeoutError{Bound: bound})
		}
	}
	err = s.pipe.DoWithin(ctx, left, scriptArgs(buf[:0], "eval", source, keys, argv), fn)
	var te *pipe.TimeoutError
	if errors.As(err, &te) {
		te.Bound = bound // the whole call's, not what was left of it
	}
	return err
}

// scriptArgs appends "cmd script numkeys keys... argv" (EVALSHA or EVAL) to
// dst.
func scriptArgs(dst []string, cmd, script string, keys []string, argv string) []string {
	dst = append(dst, cmd, script, strconv.Itoa(len(keys)))
	return append(append(dst, keys...), argv)
}
