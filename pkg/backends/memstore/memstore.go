// Package memstore is the embedded, bounded in-memory limiter.Store.
package memstore

import (
	"context"
	"time"

	"github.com/extauthz/extauthz/pkg/limiter"
)

// Options configures a Store. Zero values are the documented defaults.
type Options struct {
	// MaxKeys bounds the number of counters kept (default 1,000,000).
	MaxKeys int
	// Now returns the current time (default time.Now).
	Now func() time.Time
}

// Store is a sharded in-memory limiter.Store.
type Store struct{ opts Options }

var _ limiter.Store = (*Store)(nil)

// New returns a Store; Close stops its sweeper.
func New(opts Options) (*Store, error) { return &Store{opts: opts}, nil }

// Take implements limiter.Store.
func (s *Store) Take(ctx context.Context, mode limiter.Mode, reqs []limiter.Request, res []limiter.Result) error {
	return nil
}

// Close stops the background sweeper.
func (s *Store) Close() error { return nil }
