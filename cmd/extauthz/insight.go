package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/insight"
	"github.com/extauthz/extauthz/pkg/wire"
)

// newInsight returns the traffic insight recorder of cfg, nil when
// insight is disabled. It shares the first Redis backend of the chain, if
// any, to answer for the whole fleet.
func newInsight(cfg *config.Config, bs *wire.Backends, log *slog.Logger) (*insight.Recorder, error) {
	if cfg.Insight.Disabled {
		return nil, nil
	}
	return insight.New(cfg.Insight, insight.Options{Logger: log, Redis: bs.RedisClient()})
}

// insightAPI is rec's JSON API, nil when insight is disabled.
func insightAPI(rec *insight.Recorder) http.Handler {
	if rec == nil {
		return nil
	}
	return rec.Handler()
}

// closeInsight stops rec and flushes its last deltas to Redis.
func closeInsight(rec *insight.Recorder, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rec.Close(ctx); err != nil {
		log.Warn("insight: last merge into Redis failed", "err", err)
	}
}
