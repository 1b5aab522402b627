package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/wire"
)

// snapshotConfig is a server file whose extractor names the client IP
// entry key and whose only rule limits that key: two generations with
// different keys never match each other's rules.
func snapshotConfig(t *testing.T, key string, limit int) *config.Config {
	t.Helper()
	cfg, err := config.Load(strings.NewReader(fmt.Sprintf(`response_headers: {enabled: true}
domains:
  - domain: web
    descriptors:
      - key: %[1]s
        rate_limit: {unit: minute, requests_per_unit: %[2]d}
authz:
  domain: web
  descriptors:
    - name: per_ip
      entries: [{from: client_ip, key: %[1]s}]
`, key, limit)), key+".yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestReloadSwapsOneSnapshot (issue 16, finding 10): a reload that renames
// both the descriptor key the extractor produces and the rule key, while
// Checks run, never pairs one config's extractor with the other's rules.
// Such a pair matches no rule, so the Check would be admitted unlimited,
// without a limit header; every Check must instead be limited by the
// config it read (1000000 or 2000000, each with its own key).
func TestReloadSwapsOneSnapshot(t *testing.T) {
	gens := []*config.Config{snapshotConfig(t, "client_a", 1000000), snapshotConfig(t, "client_b", 2000000)}
	snap, err := wire.NewSnapshot(gens[0])
	if err != nil {
		t.Fatal(err)
	}
	mem, err := memstore.New(memstore.Options{SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	srv, err := server.New(server.Options{Store: mem, Logger: slogDiscard()}, snap)
	if err != nil {
		t.Fatal(err)
	}
	authz, err := server.NewAuthz(srv)
	if err != nil {
		t.Fatal(err)
	}
	var level slog.LevelVar
	ctx, cancel := context.WithCancel(context.Background())
	var checks, unlimited atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			req := checkFrom(fmt.Sprintf("198.51.100.%d", w+1), nil)
			for ctx.Err() == nil {
				resp, err := authz.Check(context.Background(), req)
				if err != nil {
					t.Errorf("Check: %v", err)
					return
				}
				checks.Add(1)
				if limitHeader(resp) == "" {
					unlimited.Add(1)
				}
			}
		})
	}
	reloads := 0
	for ; reloads < 400 || checks.Load() < 2000; reloads++ {
		if err := applyReload(srv, authz, &level, gens[(reloads+1)%2]); err != nil {
			t.Fatalf("reload %d: %v", reloads, err)
		}
		if reloads > 200000 {
			break
		}
	}
	cancel()
	wg.Wait()
	if n := unlimited.Load(); n > 0 {
		t.Errorf("%d of %d Checks during %d reloads matched no rule: one config's extractor paired with the other's rules", n, checks.Load(), reloads)
	}
	if checks.Load() == 0 {
		t.Fatal("no Check ran during the reloads")
	}
}

// limitHeader returns the X-RateLimit-Limit value of a Check answer
// (allowed or refused), "" when it has none.
func limitHeader(resp *authv3.CheckResponse) string {
	hs := resp.GetOkResponse().GetResponseHeadersToAdd()
	if d := resp.GetDeniedResponse(); d != nil {
		hs = d.GetHeaders()
	}
	for _, h := range hs {
		if strings.EqualFold(h.GetHeader().GetKey(), server.DefaultLimitHeader) {
			return h.GetHeader().GetValue()
		}
	}
	return ""
}
