package insight

import (
	"errors"
	"time"

	"github.com/extauthz/extauthz/pkg/field"
)

// Settings configure traffic insight (the insight: section of the server
// file). Zero values are the documented defaults.
//
//	insight:
//	  disabled: false        # insight is on by default
//	  top_k: 64              # counters per rule and sketch (error bound N/k)
//	  max_rules: 64          # rules tracked; decisions of further rules are not recorded
//	  flush_interval: 10s    # how often a replica merges into Redis
//	  retention: 840h        # history kept, 35 days (hours: always the last 48)
//	  redis_prefix: "extauthz:insight:"
type Settings struct {
	// Disabled turns insight off: nothing is recorded and /api/v1/ answers
	// 404 (default false: on).
	Disabled bool `yaml:"disabled"`
	// TopK is the number of counters of each sketch (default 64, at most
	// 4096). Counts shown overestimate by at most N/k, N the weight of the
	// window.
	TopK int `yaml:"top_k"`
	// MaxRules bounds the (domain, rule) pairs tracked (default 64, at
	// most 65536); decisions of rules beyond it are not recorded. Memory
	// is at most about 7 KB x TopK per rule (every bucket of every window
	// full): about 30 MB with the defaults, whatever the number of
	// clients.
	MaxRules int `yaml:"max_rules"`
	// FlushInterval is how often a replica merges its deltas into Redis in
	// one pipelined call (default 10s, at least 1s).
	FlushInterval time.Duration `yaml:"flush_interval"`
	// Retention is how long daily roll-ups and daily top offenders are kept
	// (default 35 days = 840h; at least 1 day, at most 400 days).
	Retention time.Duration `yaml:"retention"`
	// RedisPrefix starts every Redis key insight writes (default
	// "extauthz:insight:").
	RedisPrefix string `yaml:"redis_prefix"`
}

// Defaults.
const (
	DefaultTopK          = 64
	DefaultMaxRules      = 64
	DefaultFlushInterval = 10 * time.Second
	DefaultRetention     = 35 * 24 * time.Hour
	DefaultRedisPrefix   = "extauthz:insight:"

	maxTopK      = 4096
	maxMaxRules  = 1 << 16
	day          = 24 * time.Hour
	maxRetention = 400 * day
)

// Validate reports every invalid setting as a *field.Error with its path
// relative to the insight section.
func (s Settings) Validate() error {
	var errs []error
	if s.TopK < 0 || s.TopK > maxTopK {
		errs = append(errs, field.Errorf("top_k", "%d: want 1 to %d (0: default %d)", s.TopK, maxTopK, DefaultTopK))
	}
	if s.MaxRules < 0 || s.MaxRules > maxMaxRules {
		errs = append(errs, field.Errorf("max_rules", "%d: want 1 to %d (0: default %d)", s.MaxRules, maxMaxRules, DefaultMaxRules))
	}
	if s.FlushInterval != 0 && s.FlushInterval < time.Second {
		errs = append(errs, field.Errorf("flush_interval", "%v: want at least 1s (0: default %v)", s.FlushInterval, DefaultFlushInterval))
	}
	if s.Retention != 0 && (s.Retention < day || s.Retention > maxRetention) {
		errs = append(errs, field.Errorf("retention", "%v: want 24h to %v (0: default %v)", s.Retention, maxRetention, DefaultRetention))
	}
	return errors.Join(errs...)
}

// withDefaults returns s with zero values replaced by defaults.
func (s Settings) withDefaults() Settings {
	if s.TopK == 0 {
		s.TopK = DefaultTopK
	}
	if s.MaxRules == 0 {
		s.MaxRules = DefaultMaxRules
	}
	if s.FlushInterval == 0 {
		s.FlushInterval = DefaultFlushInterval
	}
	if s.Retention == 0 {
		s.Retention = DefaultRetention
	}
	if s.RedisPrefix == "" {
		s.RedisPrefix = DefaultRedisPrefix
	}
	return s
}

// retentionDays is the retention in whole days, rounded up.
func (s Settings) retentionDays() int {
	return int((s.Retention + day - 1) / day)
}
