package server

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
)

// TestShouldRateLimitAPIKeyByDigest (issue 16, finding 2): the api_key
// value of a RateLimitService descriptor is the key, matched to a listing
// by digest only: a listed id is an unlisted key. Check and ShouldRateLimit
// count one key on one counter, whose key never holds the key in clear.
func TestShouldRateLimitAPIKeyByDigest(t *testing.T) {
	e := newAuthzEnv(t, Settings{}, AuthzSettings{})
	rls := func(key string) string {
		t.Helper()
		resp, err := e.rls.ShouldRateLimit(context.Background(), request("web", desc("api_key", key)))
		if err != nil {
			t.Fatal(err)
		}
		return fmtStatus(resp.GetStatuses()[0])
	}
	// per_key: 1 a minute, the pro tier 1000.
	if got, want := rls("acme"), "OK per_key 1/MINUTE remaining=0 reset=1m0s"; got != want {
		t.Errorf("api_key=acme (the id): got %q, want %q (an unlisted key)", got, want)
	}
	if got, want := rls("sk-pro"), "OK per_key 1000/MINUTE remaining=999 reset=1m0s"; got != want {
		t.Errorf("api_key=sk-pro (the key): got %q, want %q (the pro tier)", got, want)
	}

	for _, key := range []string{"sk-pro", "sk-unlisted"} {
		before := len(e.store.takes())
		e.check(t, checkRequest("10.0.0.1", "/", "x-forwarded-for", "198.51.100.9", "x-api-key", key))
		rls(key)
		takes := e.store.takes()[before:]
		if len(takes) != 2 {
			t.Fatalf("%s: got %d takes, want 2", key, len(takes))
		}
		checkKey, rlsKey := takes[0].reqs[1].Key, takes[1].reqs[0].Key
		if checkKey != rlsKey {
			t.Errorf("%s: Check counts on %q, ShouldRateLimit on %q: want one counter", key, checkKey, rlsKey)
		}
		if strings.Contains(rlsKey, key) {
			t.Errorf("%s: counter key %q holds the key in clear", key, rlsKey)
		}
	}
}

// TestShouldRateLimitAPIKeyNeverInClear: an over-limit api_key descriptor
// shows its key neither in the debug log nor in a detailed_metric label.
func TestShouldRateLimitAPIKeyNeverInClear(t *testing.T) {
	ids, err := extract.NewIdentities(extract.IdentitiesOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules, err := descriptor.NewSet([]descriptor.Domain{{Name: "edge", Descriptors: []descriptor.Node{
		{Key: "api_key", DetailedMetric: true, RateLimit: &descriptor.RateLimit{Unit: descriptor.UnitMinute, RequestsPerUnit: 1}},
	}}}, descriptor.Options{Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := NewSnapshot(rules, Settings{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	mem, err := memstore.New(memstore.Options{MaxKeys: 100, SweepInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	s, err := New(Options{Store: mem, Metrics: mustMetrics(t, reg), Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}, snap)
	if err != nil {
		t.Fatal(err)
	}
	const key = "sk-very-secret"
	for range 2 {
		if _, err := s.ShouldRateLimit(context.Background(), request("edge", desc("api_key", key))); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(logs.String(), "over limit") {
		t.Fatalf("no over-limit debug log: %s", logs.String())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var labels strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels.WriteString(l.GetValue() + " ")
			}
		}
	}
	if want := "edge.api_key_" + extract.HashValue(key); !strings.Contains(labels.String(), want) {
		t.Errorf("labels %q lack %q", labels.String(), want)
	}
	if strings.Contains(labels.String()+logs.String(), key) {
		t.Errorf("the key shows in labels %q or logs %q", labels.String(), logs.String())
	}
}

// TestCanonicalKeysAllocs: canonicalising API keys at ingress hashes on the
// stack into the pooled buffer: no allocation once the buffer has grown.
func TestCanonicalKeysAllocs(t *testing.T) {
	_, ids := authzExtractor(t)
	sc := &scratch{}
	keys := []string{"sk-pro", "sk-unlisted", strings.Repeat("k", 200)}
	es := make([]descriptor.Entry, len(keys))
	run := func() {
		for i, k := range keys {
			es[i] = descriptor.Entry{Key: "api_key", Value: k}
		}
		sc.keyIDs, sc.now = sc.keyIDs[:0], time.Time{}
		canonicalKeys(ids, es, sc)
	}
	run()
	if es[0].Value != "acme" || es[1].Value != extract.HashValue("sk-unlisted") || es[2].Value != extract.HashValue(keys[2]) {
		t.Fatalf("got %v", es)
	}
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Errorf("canonicalKeys: %v allocations per run, want 0", n)
	}
}

// TestExplainAPIKey: explain canonicalises API keys as ShouldRateLimit
// does (extauthz explain --descriptor api_key=...).
func TestExplainAPIKey(t *testing.T) {
	_, ids := authzExtractor(t)
	var b strings.Builder
	ds := []descriptor.Descriptor{{{Key: "api_key", Value: "sk-pro"}}, {{Key: "api_key", Value: "acme"}}}
	if err := Explain(&b, authzRules(t, ids), "web", ds); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "(api_key=acme)") || !strings.Contains(out, "(api_key="+extract.HashValue("acme")+")") || strings.Contains(out, "sk-pro") {
		t.Errorf("got\n%s\nwant sk-pro as acme, acme as its hash, and never sk-pro", out)
	}
	if ds[0][0].Value != "sk-pro" {
		t.Errorf("Explain changed the caller's descriptor to %v", ds[0])
	}
}
