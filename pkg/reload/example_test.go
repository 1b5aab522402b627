package reload_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/reload"
)

// A server swaps each reloaded configuration in atomically, keeps its
// listeners and backends, and logs what needs a restart.
func Example() {
	const path = "/etc/extauthz/extauthz.yaml"
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	started, err := config.LoadFile(path)
	if err != nil {
		log.Error("config", "err", err)
		return
	}
	var serving atomic.Pointer[config.Config] // what handlers read, per request
	serving.Store(started)

	w, err := reload.New(reload.Options{
		Path:    path,
		Load:    func() (*config.Config, error) { return config.LoadFile(path) },
		Current: started,
		OnReload: func(cfg *config.Config, hash string) {
			serving.Store(cfg)
			log.Info("config reloaded", "hash", hash)
			if keys := reload.RestartRequired(started, cfg); len(keys) > 0 {
				log.Warn("settings changed that apply only after a restart", "settings", keys)
			}
		},
		OnError: func(err error) { log.Error("config reload failed; the previous config keeps serving", "err", err) },
		Signals: []os.Signal{syscall.SIGHUP},
	})
	if err != nil {
		log.Error("watch config", "err", err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_ = w.Run(ctx) // until SIGTERM
}
