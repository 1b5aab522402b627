package pipe

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/extauthz/extauthz/internal/redistest"
)

// incrScript answers each key's INCRBY by its argument as 8 digits, the
// replies back to back: a Script of Width 8.
const incrScript = `local out = {}
for i = 1, #KEYS do
  out[i] = string.format('%08d', redis.call('INCRBY', KEYS[i], ARGV[i]))
end
return table.concat(out)`

func loadScript(t *testing.T, srv *redistest.Server, src string) string {
	t.Helper()
	sha, err := srv.Client(t).ScriptLoad(context.Background(), src).Result()
	if err != nil {
		t.Fatal(err)
	}
	return sha
}

// TestDoScriptMerges: concurrent DoScript calls of one Script go out as a
// few merged EVALSHAs, each call gets its own reply (every count of each
// key is seen exactly once), and plain calls in the same batches are
// answered as before.
func TestDoScriptMerges(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	sc := &Script{SHA: loadScript(t, srv, incrScript), Width: 8}
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial})
	ctx := timeout(t, 20*time.Second)

	const workers, each, keys = 64, 100, 4
	const perKey = workers * each / keys
	var seen [keys][perKey + 1]atomic.Bool
	var plain atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers*each+1)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				if w%8 == 0 && i%2 == 0 { // plain calls mixed in
					if _, err := do(ctx, c, "INCR", "plain"); err != nil {
						errs <- err
					}
					plain.Add(1)
				}
				key := (w*each + i) % keys
				var n int64
				err := c.DoScript(ctx, 0, sc, "k"+strconv.Itoa(key), "1", func(r Reply) error {
					var err error
					n, err = strconv.ParseInt(string(r.Str), 10, 64)
					return err
				})
				switch {
				case err != nil:
					errs <- err
				case n < 1 || n > perKey || seen[key][n].Swap(true):
					errs <- fmt.Errorf("key %d: count %d twice or out of range", key, n)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	rdb := srv.Client(t)
	for k := range keys {
		if got, _ := rdb.Get(ctx, "k"+strconv.Itoa(k)).Int64(); got != perKey {
			t.Errorf("k%d = %d, want %d", k, got, perKey)
		}
	}
	if got, _ := rdb.Get(ctx, "plain").Int64(); got != plain.Load() {
		t.Errorf("plain = %d, want %d", got, plain.Load())
	}
	stats, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	evals := commandCalls(stats, "evalsha")
	t.Logf("%d script calls in %d EVALSHAs, %d writes", workers*each, evals, d.writes.Load())
	if evals <= 0 || evals > workers*each/4 {
		t.Errorf("%d EVALSHAs for %d script calls: merging does not happen", evals, workers*each)
	}
}

// commandCalls reads a command's calls from INFO commandstats.
func commandCalls(stats, cmd string) int {
	for _, line := range strings.Split(stats, "\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(rest[:strings.IndexByte(rest, ',')])
			return n
		}
	}
	return 0
}

// An error reply to a merged command goes to each of its calls; a reply of
// the wrong size fails them with ErrUnexpected; the connection stays up.
func TestDoScriptErrors(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial})
	ctx := timeout(t, 20*time.Second)
	for _, tc := range []struct {
		name  string
		sc    *Script
		check func(error) bool
	}{
		{"missing script", &Script{SHA: strings.Repeat("0", 40), Width: 8}, func(err error) bool {
			var e Error
			return errors.As(err, &e) && strings.HasPrefix(string(e), "NOSCRIPT")
		}},
		{"wrong width", &Script{SHA: loadScript(t, srv, incrScript), Width: 9}, func(err error) bool { return errors.Is(err, ErrUnexpected) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const calls = 16
			errs := make(chan error, calls)
			var wg sync.WaitGroup
			for i := range calls {
				wg.Go(func() {
					errs <- c.DoScript(ctx, 0, tc.sc, "e"+strconv.Itoa(i), "1", func(Reply) error { return nil })
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if !tc.check(err) {
					t.Errorf("got %v", err)
				}
			}
			if _, err := do(ctx, c, "PING"); err != nil {
				t.Errorf("PING after: %v", err)
			}
		})
	}
	if n := d.dials.Load(); n != 1 {
		t.Errorf("%d dials, want the connection kept", n)
	}
}

func TestDoScriptAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	srv := redistest.Start(t, redistest.Options{})
	sc := &Script{SHA: loadScript(t, srv, incrScript), Width: 8}
	d := &testDialer{addr: srv.Addr}
	c := newClient(t, Config{Dial: d.dial})
	ctx := context.Background()
	size := 0
	fn := func(r Reply) error { size = len(r.Str); return nil }
	run := func() {
		if err := c.DoScript(ctx, time.Second, sc, "allocs", "1", fn); err != nil {
			t.Fatal(err)
		}
	}
	for range 100 {
		run()
	}
	if allocs := testing.AllocsPerRun(2000, run); allocs > 0 {
		t.Errorf("%v allocations per DoScript, want none", allocs)
	}
	if size != 8 {
		t.Errorf("reply of %d bytes, want 8", size)
	}
}
