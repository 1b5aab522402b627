// Command http is a small net/http service limited by extauthz rules in
// process: a global per-IP limit and a stricter one on POST /login.
//
//	go run ./examples/go/http --listen 127.0.0.1:8090 --config examples/go/http/config.yaml
//
// With --remote HOST:PORT it asks a running extauthz instead (same rules
// loaded there); the handlers do not change.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/extauthz/extauthz/ratelimit"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// run serves until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("http", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8090", "listen address")
	configFile := fs.String("config", "", "extauthz rule file (in-process limiter)")
	remote := fs.String("remote", "", "address of a running extauthz (remote limiter, instead of --config)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	lim, err := openLimiter(ctx, *configFile, *remote)
	if err != nil {
		return err
	}
	defer lim.Close()

	h, err := newHandler(lim)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	lis, err := lc.Listen(ctx, "tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(stdout, "listening on %s\n", lis.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// openLimiter opens the in-process limiter, or dials a remote one.
func openLimiter(ctx context.Context, configFile, remote string) (*ratelimit.Limiter, error) {
	switch {
	case remote != "":
		return ratelimit.Dial(ctx, remote, ratelimit.RemoteOptions{FailureMode: ratelimit.FailOpen})
	case configFile != "":
		return ratelimit.Open(ctx, configFile)
	}
	return nil, errors.New("--config or --remote is required")
}

// newHandler is the service: GET /hello and POST /login, both under the
// global per-IP limit, /login also under its own.
func newHandler(lim ratelimit.Decider) (http.Handler, error) {
	clientIP := ratelimit.By("remote_address", ratelimit.ClientIP(ratelimit.ClientIPOptions{}))
	mw, err := ratelimit.NewMiddleware(lim, ratelimit.HTTPOptions{
		Domain:      "web",
		Descriptors: [][]ratelimit.Key{{clientIP}},
	})
	if err != nil {
		return nil, err
	}
	login, err := mw.Limit(http.HandlerFunc(loginHandler), ratelimit.Named("login", clientIP))
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /hello", helloHandler)
	mux.Handle("POST /login", login)
	return mw.Handler(mux), nil
}

// helloHandler shows the decision the middleware put in the context.
func helloHandler(w http.ResponseWriter, r *http.Request) {
	d, _ := ratelimit.FromContext(r.Context())
	s, _ := d.Limiting()
	fmt.Fprintf(w, "hello: rule %s, %d of %d left\n", s.Rule, s.Remaining, s.Limit)
}

func loginHandler(w http.ResponseWriter, r *http.Request) {
	d, _ := ratelimit.FromContext(r.Context())
	s, _ := d.Limiting()
	fmt.Fprintf(w, "logged in: rule %s, %d of %d left\n", s.Rule, s.Remaining, s.Limit)
}
