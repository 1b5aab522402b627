//go:build unix

package reload

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestSIGHUP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "extauthz.yaml")
	writeFile(t, path, serverFile(1, ""))
	// A long debounce, to show that a signal loads at once.
	h := start(t, path, func(o *Options) {
		o.Signals = []os.Signal{syscall.SIGHUP}
		o.Debounce = time.Minute
	})

	// New subscribed before returning, so the signal cannot kill the test.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	h.nextUnchanged(t)

	writeFile(t, path, serverFile(9, ""))
	start := time.Now()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if got := limit(h.next(t), "edge"); got != 9 {
		t.Errorf("limit after SIGHUP: got %d, want 9", got)
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("SIGHUP reload took %v: it waited for the debounce", d)
	}
}
