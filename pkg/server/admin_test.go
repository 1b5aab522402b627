package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestAdmin(t *testing.T) {
	reg := prometheus.NewRegistry()
	ctr := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_things_total", Help: "Things."})
	reg.MustRegister(ctr)
	ctr.Add(3)
	var notReady error
	h := NewAdmin(AdminOptions{
		Gatherer: reg,
		Ready:    func(context.Context) error { return notReady },
		Config:   func() []byte { return []byte("grpc_addr: 127.0.0.1:8081\n") },
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(method, path string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
	}

	tests := []struct {
		name, method, path string
		wantCode           int
		wantType, wantBody string
		before             func()
	}{
		{name: "healthz", method: "GET", path: "/healthz", wantCode: 200, wantType: "text/plain", wantBody: "ok\n"},
		{name: "ready", method: "GET", path: "/readyz", wantCode: 200, wantBody: "ready\n"},
		{name: "healthcheck", method: "GET", path: "/healthcheck", wantCode: 200, wantType: "text/plain", wantBody: "OK"},
		{name: "healthcheck head", method: "HEAD", path: "/healthcheck", wantCode: 200},
		{name: "not ready", method: "GET", path: "/readyz", wantCode: 503, wantBody: "not ready: store: down\n",
			before: func() { notReady = errors.New("store: down") }},
		{name: "healthcheck not healthy", method: "GET", path: "/healthcheck", wantCode: 500, wantBody: "not healthy: store: down\n"},
		{name: "no json handler", method: "POST", path: "/json", wantCode: 404},
		{name: "metrics", method: "GET", path: "/metrics", wantCode: 200, wantBody: "test_things_total 3"},
		{name: "config", method: "GET", path: "/config", wantCode: 200, wantType: "application/yaml", wantBody: "grpc_addr: 127.0.0.1:8081\n"},
		{name: "wrong method", method: "POST", path: "/config", wantCode: 405},
		{name: "unknown path", method: "GET", path: "/debug", wantCode: 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.before != nil {
				tc.before()
			}
			code, typ, body := get(tc.method, tc.path)
			if code != tc.wantCode {
				t.Errorf("got status %d, want %d", code, tc.wantCode)
			}
			if !strings.HasPrefix(typ, tc.wantType) {
				t.Errorf("got content type %q, want %q", typ, tc.wantType)
			}
			if !strings.Contains(body, tc.wantBody) {
				t.Errorf("got body %q, want it to contain %q", body, tc.wantBody)
			}
		})
	}
}

func TestServerReady(t *testing.T) {
	e := newEnv(t, Settings{})
	if err := e.srv.Ready(context.Background()); err != nil {
		t.Errorf("memstore: got %v, want ready", err)
	}
	e.srv.store = &readyStore{err: errors.New("no connection")}
	if err := e.srv.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "store: no connection") {
		t.Errorf("failing store: got %v, want the store's error", err)
	}
}

type readyStore struct {
	recordingStore
	err error
}

func (s *readyStore) Ready(context.Context) error { return s.err }
