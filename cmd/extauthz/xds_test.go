package main

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	rlsconfv3 "github.com/envoyproxy/go-control-plane/ratelimit/config/ratelimit/v3"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/wire"
	"github.com/extauthz/extauthz/pkg/xdsrules"
)

func loadYAML(t *testing.T, s string) *config.Config {
	t.Helper()
	cfg, err := config.Load(strings.NewReader(s), "extauthz.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestXDSAndFileReloads interleaves xDS updates and server file reloads:
// each swaps in the file's settings with the last update's domains; a bad
// update or a reload that adds or removes rules_xds changes nothing.
func TestXDSAndFileReloads(t *testing.T) {
	const xdsFile = "rules_xds: {address: 127.0.0.1:18000}\n"
	cfg := loadYAML(t, xdsFile)
	snap, err := wire.NewSnapshot(cfg)
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
	x := &xdsState{file: cfg}
	d := &daemon{cfg: cfg, srv: srv, level: new(slog.LevelVar), xds: x}
	update := func(n uint32, unit rlsconfv3.RateLimitUnit) xdsrules.Update {
		return xdsrules.Update{Version: "v", Configs: []*rlsconfv3.RateLimitConfig{{Name: "edge", Domain: "edge", Descriptors: []*rlsconfv3.RateLimitDescriptor{
			{Key: "k", RateLimit: &rlsconfv3.RateLimitPolicy{Unit: unit, RequestsPerUnit: n}}}}}}
	}
	limit := func() int64 {
		rules := srv.Snapshot().Rules().Rules("edge")
		if len(rules) != 1 {
			return -1
		}
		return rules[0].Limit.Requests
	}

	if err := d.applyXDS(x, update(4, rlsconfv3.RateLimitUnit_MINUTE)); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != 4 {
		t.Fatalf("after an update: limit %d, want 4", got)
	}
	if err := d.applyXDS(x, update(5, rlsconfv3.RateLimitUnit_UNKNOWN)); err == nil || !strings.Contains(err.Error(), "unit") {
		t.Errorf("a bad update: got %v, want an error about the unit", err)
	}
	if got := limit(); got != 4 {
		t.Errorf("after a bad update: limit %d, want the old 4", got)
	}

	if err := d.applyFile(loadYAML(t, xdsFile+"over_limit_body: true\n")); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != 4 || !srv.Snapshot().Settings().OverLimitBody {
		t.Errorf("after a file reload: limit %d, over_limit_body %v; want 4, true", got, srv.Snapshot().Settings().OverLimitBody)
	}
	// The next update keeps the reloaded file's settings.
	if err := d.applyXDS(x, update(6, rlsconfv3.RateLimitUnit_MINUTE)); err != nil {
		t.Fatal(err)
	}
	if got := limit(); got != 6 || !srv.Snapshot().Settings().OverLimitBody {
		t.Errorf("after the next update: limit %d, over_limit_body %v; want 6, true", got, srv.Snapshot().Settings().OverLimitBody)
	}

	removed := loadYAML(t, "domains: [{domain: other, descriptors: [{key: k, rate_limit: {unit: second, requests_per_unit: 1}}]}]\n")
	if err := d.applyFile(removed); !errors.As(err, new(*refusedError)) || !strings.Contains(err.Error(), "rules_xds was removed") {
		t.Errorf("a reload without rules_xds: got %v, want a refusal naming rules_xds", err)
	}
	if got := limit(); got != 6 {
		t.Errorf("after a refused reload: limit %d, want 6", got)
	}

	plain := &daemon{cfg: removed, srv: srv, level: new(slog.LevelVar)}
	if err := plain.applyFile(cfg); !errors.As(err, new(*refusedError)) || !strings.Contains(err.Error(), "rules_xds was added") {
		t.Errorf("a reload adding rules_xds: got %v, want a refusal naming rules_xds", err)
	}
}
