package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/internal/redistest"
)

// writeHealthConfig writes a server file and returns its path.
func writeHealthConfig(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "extauthz.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHealthCmd(t *testing.T) {
	srv := redistest.Start(t, redistest.Options{})
	dead := "127.0.0.1:1"
	tests := []struct {
		name     string
		config   string
		wantCode int
		want     []string // substrings of stdout, in order
	}{
		{
			name:     "all up",
			config:   fmt.Sprintf("backends: [{type: redis, url: \"redis://%s/0\"}, {type: memory}]\n", srv.Addr),
			wantCode: 0,
			want:     []string{"BACKEND", "ADDRESS", "LATENCY", "STATE", "ERROR", "\nredis", srv.Addr + "/0", "up", "\nmemory", "(in process)", "up"},
		},
		{
			name:     "redis down, memory usable",
			config:   fmt.Sprintf("backends: [{type: redis, url: \"redis://%s/0\"}, {type: memory}]\n", dead),
			wantCode: 0,
			want:     []string{"\nredis", dead + "/0", "down", "connection refused", "\nmemory", "up"},
		},
		{
			name:     "nothing usable",
			config:   fmt.Sprintf("backends: [{type: redis, url: \"redis://%s/0\"}]\n", dead),
			wantCode: 1,
			want:     []string{"\nredis", "down"},
		},
		{
			name:     "default memory",
			config:   "grpc_addr: 127.0.0.1:0\n",
			wantCode: 0,
			want:     []string{"\nmemory", "up"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := writeHealthConfig(t, tc.config)
			var stdout, stderr bytes.Buffer
			err := healthCmd(context.Background(), []string{"--config", path, "--timeout", "500ms"}, func(string) string { return "" }, &stdout, &stderr)
			code := 0
			var ee *exitError
			switch {
			case errors.As(err, &ee):
				code = ee.code
			case err != nil:
				t.Fatalf("got error %v", err)
			}
			if code != tc.wantCode {
				t.Errorf("exit code: got %d, want %d (err %v, stderr %q)", code, tc.wantCode, err, stderr.String())
			}
			out := stdout.String()
			rest := out
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("stdout lacks %q (in order):\n%s", w, out)
					break
				}
				rest = rest[i+len(w):]
			}
			t.Logf("\n%s", out)
		})
	}
}

func TestHealthCmdUsage(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := healthCmd(context.Background(), nil, func(string) string { return "" }, &stdout, &stderr)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(stderr.String(), "--config") {
		t.Errorf("without --config: got %v, stderr %q; want a usage error naming --config", err, stderr.String())
	}
}
