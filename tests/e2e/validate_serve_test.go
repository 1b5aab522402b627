package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestValidateMatchesServe (issue 16, finding 6): for every config of
// testdata/validate_serve, "extauthz validate" accepts it exactly when
// "extauthz serve" starts on it (answers /healthz). *.ok.yaml must do
// both, *.bad.yaml neither; "@DIR@" in a file is the corpus directory.
func TestValidateMatchesServe(t *testing.T) {
	src, err := filepath.Abs("testdata/validate_serve")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(src, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	dir := t.TempDir()
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			path := WriteFile(t, dir, name, strings.ReplaceAll(string(b), "@DIR@", src))
			want := strings.HasSuffix(name, ".ok.yaml")
			v := Run(t, extauthzBin, nil, "validate", "--config", path)
			validates := v.Code == 0
			serves, logs := serveStarts(t, path)
			if validates != serves {
				t.Fatalf("validate exit %d (%s), but serve started: %v\nserve logs:\n%s", v.Code, strings.TrimSpace(v.Stdout+v.Stderr), serves, logs)
			}
			if validates != want {
				t.Errorf("validate and serve accept it: %v, want %v (the file's suffix)\nvalidate: %s", validates, want, v.Stdout+v.Stderr)
			}
			if !validates && !strings.Contains(v.Stderr, path+":") {
				t.Errorf("validate's error does not place the problem in the file: %s", v.Stderr)
			}
		})
	}
}

// serveStarts runs "extauthz serve --config path" and reports whether it
// answers /healthz within 15 s (then it is stopped) rather than exiting,
// with its output.
func serveStarts(t *testing.T, path string) (bool, string) {
	t.Helper()
	httpAddr := FreeAddr(t)
	cmd := exec.Command(extauthzBin, "serve", "--config", path, "--grpc-addr", FreeAddr(t), "--http-addr", httpAddr)
	var logs syncBuffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
	}()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false, logs.String()
		default:
		}
		if resp, err := client.Get("http://" + httpAddr + "/healthz"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true, logs.String()
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("serve neither answered /healthz nor exited in 15 s:\n%s", logs.String())
	return false, ""
}
