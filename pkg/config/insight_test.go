package config

import (
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/insight"
)

const insightRules = `
domains:
  - domain: edge
    descriptors:
      - key: remote_address
        rate_limit: {unit: second, requests_per_unit: 10}
`

func TestInsightSection(t *testing.T) {
	cfg, err := loadString(t, `
insight:
  top_k: 32
  max_rules: 10
  flush_interval: 5s
  retention: 240h
  redis_prefix: "ins:"
`+insightRules)
	if err != nil {
		t.Fatal(err)
	}
	want := insight.Settings{TopK: 32, MaxRules: 10, FlushInterval: 5 * time.Second, Retention: 240 * time.Hour, RedisPrefix: "ins:"}
	if cfg.Insight != want {
		t.Errorf("insight = %+v, want %+v", cfg.Insight, want)
	}
	cfg, err = loadString(t, "insight: {disabled: true}\n"+insightRules)
	if err != nil || !cfg.Insight.Disabled {
		t.Errorf("disabled: %+v, %v", cfg.Insight, err)
	}
}

func TestInsightErrors(t *testing.T) {
	_, err := loadString(t, `
insight:
  top_k: 100000
  retention: 1h
  flush_intervall: 5s
`+insightRules)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"test.yaml:3:10: insight.top_k: 100000: want 1 to 4096", "test.yaml:4:14: insight.retention: 1h0m0s: want 24h", "flush_intervall"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}
