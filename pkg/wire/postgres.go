package wire

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/extauthz/extauthz/pkg/backends/pgstore"
	"github.com/extauthz/extauthz/pkg/server"
)

// openPostgres opens the PostgreSQL backend named name for serving, its
// metrics hooks pointed at bm (nil: none). pgstore.Open refuses a schema
// it does not know (pgstore.ErrSchema, whose message says to run
// `extauthz migrate`) unless auto_migrate is set; a database that cannot be
// reached within the connect timeout is checked later, by the health
// probes.
func openPostgres(name string, st pgstore.Settings, bm *server.BackendMetrics) (*pgstore.Store, error) {
	var pm *server.PostgresMetrics
	var store atomic.Pointer[pgstore.Store] // set once Open returned; scrapes read it
	if bm != nil {
		var err error
		pm, err = bm.Postgres(name, func() server.PoolUsage {
			s := store.Load()
			if s == nil {
				return server.PoolUsage{}
			}
			p := s.PoolStat()
			return server.PoolUsage{Acquired: p.Acquired, Idle: p.Idle, Total: p.Total, Max: p.Max}
		})
		if err != nil {
			return nil, err
		}
		st.OnCall = func(d time.Duration, err error) { pm.Call(d, pgstore.ErrorKind(err)) }
		st.OnCleanup = func(rows int64, _ error) { pm.Cleaned(rows) }
	}
	timeout := st.ConnectTimeout
	if timeout <= 0 {
		timeout = pgstore.DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, st)
	if err != nil {
		return nil, err
	}
	store.Store(s)
	return s, nil
}
