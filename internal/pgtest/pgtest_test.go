package pgtest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestStartRestartKeepsData(t *testing.T) {
	s := Start(t, Options{Settings: []string{"application_name=pgtest"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dsn := s.CreateDatabase(t, "restart_db")
	exec := func(sql string) {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	count := func() int {
		t.Helper()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		defer c.Close(ctx)
		var n int
		if err := c.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil {
			t.Fatalf("count: %v", err)
		}
		return n
	}
	exec("CREATE TABLE t (x int)")
	exec("INSERT INTO t VALUES (1), (2)")
	s.Restart(t)
	if got := count(); got != 2 {
		t.Fatalf("rows after Restart: got %d, want 2", got)
	}
	exec("INSERT INTO t VALUES (3)")
	s.Kill() // crash: the committed row survives recovery
	if s.Running() {
		t.Fatal("Running after Kill: got true")
	}
	if _, err := pgx.Connect(ctx, dsn); err == nil {
		t.Fatal("connect after Kill: got nil error, want one")
	}
	s.Restart(t)
	if got := count(); got != 3 {
		t.Fatalf("rows after Kill and Restart: got %d, want 3", got)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir(), "PG_VERSION")); err != nil {
		t.Errorf("data directory: %v", err)
	}
}

func TestLatestBinDir(t *testing.T) {
	root := t.TempDir()
	for _, v := range []string{"9.6", "13", "15", "16", "junk"} {
		dir := filepath.Join(root, v, "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if v == "16" {
			continue // incomplete install: no binaries
		}
		for _, b := range []string{"initdb", "postgres"} {
			if err := os.WriteFile(filepath.Join(dir, b), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	if got, want := latestBinDir(root), filepath.Join(root, "15", "bin"); got != want {
		t.Errorf("latestBinDir: got %q, want %q", got, want)
	}
	if got := latestBinDir(filepath.Join(root, "missing")); got != "" {
		t.Errorf("latestBinDir of a missing root: got %q, want \"\"", got)
	}
}

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestShared(t *testing.T) {
	a, b := Shared(t), Shared(t)
	if a != b {
		t.Fatal("Shared returned two servers")
	}
	dsn := a.CreateDatabase(t, "shared_db")
	c, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	_ = c.Close(context.Background())
}

// TestReapOrphans: a server left behind by a test binary that died (its
// owner process is gone) is stopped and its directory removed by the next
// start; a live owner's server is left alone.
func TestReapOrphans(t *testing.T) {
	orphan := Start(t, Options{})
	// A process id that is not running: a finished child's.
	child := exec.Command("true")
	if err := child.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(orphan.Dir, ownerFile), []byte(strconv.Itoa(child.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	live := Start(t, Options{}) // reaps the orphan
	if _, err := os.Stat(orphan.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("orphan's directory %s: got %v, want it removed", orphan.Dir, err)
	}
	if err := orphan.query(); err == nil {
		t.Error("orphan still answers after the next Start")
	}
	if err := live.query(); err != nil {
		t.Errorf("the live server: %v", err)
	}
}
