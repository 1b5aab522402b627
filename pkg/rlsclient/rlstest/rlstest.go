// Package rlstest starts a real extauthz RateLimitService (pkg/server over
// a memory store) on a loopback port, for tests of its clients.
package rlstest

import (
	"net"
	"testing"

	"google.golang.org/grpc"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
)

// Server is a running RateLimitService.
type Server struct {
	// Addr is its host:port.
	Addr string
	g    *grpc.Server
}

// Start serves the rules of the server file at path with settings st (the
// file's other settings are ignored) until the test ends or Stop.
func Start(t testing.TB, path string, st server.Settings) *Server {
	t.Helper()
	cfg, err := config.LoadFile(path)
	if err != nil {
		t.Fatalf("rlstest: %v", err)
	}
	mem, err := memstore.New(memstore.Options{})
	if err != nil {
		t.Fatalf("rlstest: %v", err)
	}
	t.Cleanup(func() { _ = mem.Close() })
	snap, err := server.NewSnapshot(cfg.Rules, st, nil)
	if err != nil {
		t.Fatalf("rlstest: %v", err)
	}
	srv, err := server.New(server.Options{Store: mem}, snap)
	if err != nil {
		t.Fatalf("rlstest: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("rlstest: %v", err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return &Server{Addr: lis.Addr().String(), g: g}
}

// Stop stops the server at once: later calls find it down.
func (s *Server) Stop() { s.g.Stop() }

// DownAddr returns a loopback address where nothing listens.
func DownAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("rlstest: %v", err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}
