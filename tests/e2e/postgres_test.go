package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rlsv3 "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	"github.com/jackc/pgx/v5"

	"github.com/extauthz/extauthz/internal/pgtest"
	"github.com/extauthz/extauthz/pkg/backends/pgstore"
)

// pgConfig is a server file whose default chain is memory and whose chain
// "durable" is [postgres at dsn, memory]; month limits go to durable.
// extra is appended verbatim.
func pgConfig(dsn, pgExtra, extra string) string {
	return fmt.Sprintf(`backends:
  - type: memory
chains:
  durable:
    - type: postgres
      name: pg
      dsn: %q
      call_timeout: 2s
      cleanup_interval: -1s
%s    - type: memory
chains_by_unit: {month: durable}
breaker:
  consecutive_failures: 3
  open_for: %v
health_check:
  interval: %v
  timeout: 200ms
domains:
  - domain: edge
    descriptors:
      - key: ip
        rate_limit: {unit: second, requests_per_unit: 2}
      - key: user
        rate_limit: {unit: month, requests_per_unit: 3}
      - key: burst
        rate_limit: {unit: second, requests_per_unit: 100, chain: durable}
  - domain: failover
    descriptors:
      - key: client
        rate_limit: {unit: month, requests_per_unit: 100000000}
  - domain: quota
    descriptors:
      - key: client
        rate_limit: {unit: month, requests_per_unit: %d}
%s`, dsn, pgExtra, foOpenFor, foInterval, pgQuota, extra)
}

// pgQuota is the month quota that replicas share in TestPostgresReplicas.
const pgQuota = 50

// pgSetup starts PostgreSQL with a database for t and returns the server
// and the database's DSN.
func pgSetup(t *testing.T) (*pgtest.Server, string) {
	t.Helper()
	srv := pgtest.Start(t, pgtest.Options{})
	return srv, srv.CreateDatabase(t, "extauthz_e2e")
}

// pgCounts returns the number of live rows and the sum of their counts in
// the extauthz schema of dsn.
func pgCounts(t *testing.T, dsn string) (rows, sum int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer c.Close(ctx)
	err = c.QueryRow(ctx, `SELECT count(*), coalesce(sum(count), 0)::bigint FROM extauthz.counters
		WHERE expires_at > (extract(epoch FROM clock_timestamp()) * 1e9)::bigint`).Scan(&rows, &sum)
	if err != nil {
		t.Fatalf("count rows: %v", err)
	}
	return rows, sum
}

func migrate(t *testing.T, cfgPath string) Result {
	t.Helper()
	r := Run(t, extauthzBin, nil, "migrate", "--config", cfgPath)
	if r.Code != 0 {
		t.Fatalf("migrate: exit %d\nstdout: %s\nstderr: %s", r.Code, r.Stdout, r.Stderr)
	}
	return r
}

// TestPostgresMigrateServeAndRoute: serve refuses the missing schema;
// migrate creates it (then finds it up to date, also when run three times
// at once); validate and explain name the chain; per-second limits count in
// memory and month quotas in PostgreSQL; cleanup removes expired rows.
func TestPostgresMigrateServeAndRoute(t *testing.T) {
	_, dsn := pgSetup(t)
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", pgConfig(dsn, "", ""))

	r := Run(t, extauthzBin, nil, "serve", "--config", path, "--grpc-addr", FreeAddr(t), "--http-addr", FreeAddr(t))
	if r.Code == 0 || !strings.Contains(r.Stderr, "extauthz migrate") {
		t.Fatalf("serve on an empty database: exit %d, stderr %q; want a refusal that says to run extauthz migrate", r.Code, r.Stderr)
	}
	last := fmt.Sprint(pgstore.SchemaVersion)
	if out := migrate(t, path).Stdout; !strings.Contains(out, "version 0 -> "+last) || !strings.Contains(out, "chains.durable[0] (pg") {
		t.Errorf("first migrate: %q, want chains.durable[0] (pg ...) version 0 -> %s", out, last)
	}
	var wg sync.WaitGroup
	outs := make([]Result, 3)
	for i := range outs {
		wg.Go(func() { outs[i] = Run(t, extauthzBin, nil, "migrate", "--config", path) })
	}
	wg.Wait()
	for i, o := range append(outs, migrate(t, path)) {
		if o.Code != 0 || !strings.Contains(o.Stdout, "up to date: version "+last+" -> "+last) {
			t.Errorf("migrate run %d again: exit %d, %q %q; want up to date", i, o.Code, o.Stdout, o.Stderr)
		}
	}

	v := Run(t, extauthzBin, nil, "validate", "--config", path)
	if v.Code != 0 || !strings.Contains(v.Stdout, "chain durable [pg -> memory#2]: 3 rules: edge.user, edge.burst, quota.client") &&
		!strings.Contains(v.Stdout, "chain durable [pg -> memory#2]: 4 rules") {
		t.Errorf("validate: exit %d\n%s%s", v.Code, v.Stdout, v.Stderr)
	}
	if !strings.Contains(v.Stdout, "chain default [memory]: 1 rule: edge.ip") {
		t.Errorf("validate does not list the default chain's rule:\n%s", v.Stdout)
	}
	e := Run(t, extauthzBin, nil, "explain", "--config", path, "--domain", "edge", "--descriptor", "user=u1")
	if e.Code != 0 || !strings.Contains(e.Stdout, "chain: durable") || !strings.Contains(e.Stdout, "in chain durable") {
		t.Errorf("explain: exit %d\n%s%s", e.Code, e.Stdout, e.Stderr)
	}

	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	rls := rlsv3.NewRateLimitServiceClient(p.Dial(t))
	ctx := context.Background()
	codes := func(ds ...[]string) string {
		req := &rlsv3.RateLimitRequest{Domain: "edge"}
		for _, d := range ds {
			req.Descriptors = append(req.Descriptors, desc(d...))
		}
		resp, err := rls.ShouldRateLimit(ctx, req)
		if err != nil {
			t.Fatalf("ShouldRateLimit: %v", err)
		}
		var out []string
		for _, s := range resp.Statuses {
			out = append(out, s.Code.String())
		}
		return strings.Join(out, " ")
	}
	// Each request: ip (2/s, memory) and user (3/month, postgres).
	got := []string{codes([]string{"ip", "a"}, []string{"user", "u1"}), codes([]string{"ip", "a"}, []string{"user", "u1"}),
		codes([]string{"ip", "a"}, []string{"user", "u1"})}
	want := []string{"OK OK", "OK OK", "OVER_LIMIT OK"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("call %d: %s, want %s", i+1, got[i], want[i])
		}
	}
	if rows, sum := pgCounts(t, dsn); rows != 1 || sum != 3 {
		t.Errorf("postgres: %d live rows with counts summing to %d; want 1 row (user u1) counting 3, no per-second key", rows, sum)
	}
	if c := codes([]string{"user", "u1"}); c != "OVER_LIMIT" {
		t.Errorf("4th user call: %s, want OVER_LIMIT", c)
	}
	// The per-second ip limit was in memory: a fresh second admits again.
	time.Sleep(1100 * time.Millisecond)
	if c := codes([]string{"ip", "a"}); c != "OK" {
		t.Errorf("ip a in a new second: %s, want OK", c)
	}

	// Expired rows: burst keys (per second, in postgres by rate_limit.chain).
	for i := range 20 {
		codes([]string{"burst", fmt.Sprint("k", i)})
	}
	time.Sleep(1500 * time.Millisecond)
	c := Run(t, extauthzBin, nil, "cleanup", "--config", path)
	if c.Code != 0 || !strings.Contains(c.Stdout, "removed 20 expired rows") {
		t.Errorf("cleanup: exit %d, %q %q; want removed 20 expired rows", c.Code, c.Stdout, c.Stderr)
	}
	if rows, sum := pgCounts(t, dsn); rows != 1 || sum != 4 {
		t.Errorf("after cleanup: %d live rows summing to %d; want user u1's row (4: the refused 4th call counts under count_mode all)", rows, sum)
	}
	_, metrics := p.Get(t, "/metrics")
	for _, m := range []string{`extauthz_backend_request_duration_seconds_count{backend="pg"}`, `extauthz_postgres_pool_connections{backend="pg",state="max"}`, `extauthz_postgres_rows_cleaned_total{backend="pg"} 0`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	_, cfg := p.Get(t, "/config")
	if strings.Contains(cfg, "postgres://postgres@") {
		t.Errorf("/config shows the dsn:\n%s", cfg)
	}
}

// TestPostgresReplicas: three extauthz processes share one database; 30
// clients spread over them admit exactly the month quota; a restarted
// replica keeps refusing (the count is in PostgreSQL).
func TestPostgresReplicas(t *testing.T) {
	_, dsn := pgSetup(t)
	// One hot row: 30 callers queue on its lock, on a busy test machine;
	// the statement timeout must not cut them before the call timeout.
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", pgConfig(dsn, "      statement_timeout: 2s\n", ""))
	migrate(t, path)
	procs := make([]*Process, 3)
	clients := make([]rlsv3.RateLimitServiceClient, 3)
	for i := range procs {
		procs[i] = Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
		clients[i] = rlsv3.NewRateLimitServiceClient(procs[i].Dial(t))
	}
	ctx := context.Background()
	for _, c := range clients { // open connections, prepare statements
		if _, err := c.ShouldRateLimit(ctx, distRequest("quota", "warmup")); err != nil {
			t.Fatal(err)
		}
	}
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for i := range 30 {
		c := clients[i%3]
		wg.Go(func() {
			for range 6 { // 180 calls, 3.6x the quota
				resp, err := c.ShouldRateLimit(ctx, distRequest("quota", "hammer"))
				switch {
				case err != nil:
					t.Errorf("call: %v", err)
				case resp.OverallCode == rlsv3.RateLimitResponse_OK:
					admitted.Add(1)
				default:
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if admitted.Load() != pgQuota || refused.Load() != 180-pgQuota {
		t.Errorf("admitted %d, refused %d; want exactly %d admitted", admitted.Load(), refused.Load(), pgQuota)
		for _, p := range procs {
			_, m := p.Get(t, "/metrics")
			for _, line := range strings.Split(m, "\n") {
				if strings.HasPrefix(line, "extauthz_backend_errors_total") {
					t.Log(line)
				}
			}
		}
	}
	if _, sum := pgCounts(t, dsn); sum != 180+3 {
		t.Errorf("postgres counts sum to %d, want %d (every call counted once, count_mode all)", sum, 183)
	}

	procs[0].Kill()
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	resp, err := rlsv3.NewRateLimitServiceClient(p.Dial(t)).ShouldRateLimit(ctx, distRequest("quota", "hammer"))
	if err != nil || resp.OverallCode != rlsv3.RateLimitResponse_OVER_LIMIT {
		t.Errorf("after a replica restart: %v, %v; want OVER_LIMIT (the quota is used up)", resp.GetOverallCode(), err)
	}
}

// TestPostgresChainFailover: under steady load on a month quota kept in
// PostgreSQL, stop PostgreSQL, then start it again. No RPC may fail: the
// durable chain falls back to memory, and returns to PostgreSQL once a
// health probe closed the breaker.
func TestPostgresChainFailover(t *testing.T) {
	srv, dsn := pgSetup(t)
	path := WriteFile(t, t.TempDir(), "extauthz.yaml", pgConfig(dsn, "", ""))
	migrate(t, path)
	p := Start(t, Options{Binary: extauthzBin, Args: []string{"--config", path}})
	d := loadDuration()
	start := time.Now()
	l := startLoad(t, p, 5, 10*time.Millisecond)

	time.Sleep(d / 4)
	if _, sum := pgCounts(t, dsn); sum <= 0 {
		t.Fatalf("before the stop: postgres counts sum to %d, want traffic there", sum)
	}
	stopped := time.Now()
	srv.Stop()
	time.Sleep(d / 4)
	srv.Restart(t)
	restarted := time.Now()
	_, base := pgCounts(t, dsn)
	bound := foOpenFor + foInterval
	back := waitUntil(bound+5*time.Second, func() bool { _, s := pgCounts(t, dsn); return s > base })
	if rest := time.Until(start.Add(d)); rest > 0 {
		time.Sleep(rest)
	}
	l.halt()
	end := time.Now()
	all, outage := l.stats(start, end), l.stats(stopped, restarted)
	t.Logf("whole run: %v; postgres down (%v): %v; traffic back on postgres %v after restart",
		all, restarted.Sub(stopped).Round(time.Millisecond), outage, since(back, restarted))
	if all.failed > 0 {
		t.Errorf("failed RPCs: got %d of %d, want 0; first: %v", all.failed, all.calls, all.firstErr)
	}
	if outage.calls == 0 {
		t.Errorf("no RPC while postgres was down")
	}
	if back.IsZero() || back.Sub(restarted) > bound+2*time.Second {
		t.Errorf("traffic back on postgres: %v after restart, want within %v (+2s)", since(back, restarted), bound)
	}
}
