package adminauth

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTokenRotation: a new token in the file replaces the old one without
// a restart, and a broken file keeps the previous token.
func TestTokenRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	write := func(data string) {
		t.Helper()
		tmp := path + ".new"
		if err := os.WriteFile(tmp, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil { // as a Secret volume swaps files
			t.Fatal(err)
		}
	}
	const first, second = "the-first-admin-token", "the-second-admin-token-after-rotation"
	write(first)
	a, err := New(Settings{Auth: Auth{TokenFile: path}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := a.Guard(Private, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	code := func(token string) int {
		a.token.mu.Lock()
		a.token.checked = time.Time{} // as if a second had passed
		a.token.mu.Unlock()
		r := httptest.NewRequest("GET", "/config", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if got := code(first); got != http.StatusOK {
		t.Fatalf("first token: status %d, want 200", got)
	}
	write(second + "\n")
	if got := code(second); got != http.StatusOK {
		t.Errorf("new token: status %d, want 200", got)
	}
	if got := code(first); got != http.StatusUnauthorized {
		t.Errorf("old token after rotation: status %d, want 401", got)
	}
	write("short")
	if got := code(second); got != http.StatusOK {
		t.Errorf("after a broken rewrite: status %d, want 200 with the previous token", got)
	}
}
