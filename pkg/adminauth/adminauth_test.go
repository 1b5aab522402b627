package adminauth_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/extauthz/extauthz/internal/testcerts"
	"github.com/extauthz/extauthz/pkg/adminauth"
	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/server"
)

const testToken = "0123456789abcdef-admin-token"

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// testAdmin is the admin handler with every optional part set.
func testAdmin(a *adminauth.Access) http.Handler {
	ok := func(body string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) })
	}
	return server.NewAdmin(server.AdminOptions{
		Gatherer:  prometheus.NewRegistry(),
		Ready:     func(context.Context) error { return nil },
		Config:    func() []byte { return []byte("grpc_addr: x\n") },
		Access:    a,
		Dashboard: ok("dashboard"),
		API:       ok("api"),
		JSON:      ok("json"),
	})
}

var (
	privatePaths = []string{"/", "/assets/app.js", "/api/v1/rules", "/api/v1/offenders?window=5m", "/config"}
	healthPaths  = []string{"/healthz", "/readyz", "/healthcheck"}
)

func adminGet(t *testing.T, c *http.Client, url, auth string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func basic(user, pass string) string {
	req, _ := http.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	tokenFile := writeFile(t, dir, "token", "  "+testToken+"\n")
	for _, tc := range []struct {
		name                          string
		protectMetrics, protectHealth bool
	}{{"defaults", false, false}, {"protect all", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := adminauth.New(adminauth.Settings{Auth: adminauth.Auth{TokenFile: tokenFile}, ProtectMetrics: tc.protectMetrics, ProtectHealth: tc.protectHealth}, nil)
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(testAdmin(a))
			defer srv.Close()
			protected := append([]string(nil), privatePaths...)
			open := []string{}
			for _, p := range []struct {
				on    bool
				paths []string
			}{{tc.protectMetrics, []string{"/metrics"}}, {tc.protectHealth, healthPaths}} {
				if p.on {
					protected = append(protected, p.paths...)
				} else {
					open = append(open, p.paths...)
				}
			}
			for _, path := range protected {
				for _, auth := range []string{"", "Bearer wrong-token-0123456789", "Bearer " + testToken + "x", "Bearer", "Token " + testToken, basic("admin", "wrong"), "Basic !!!"} {
					code, h, body := adminGet(t, srv.Client(), srv.URL+path, auth)
					if code != http.StatusUnauthorized {
						t.Errorf("GET %s with %q: status %d, want 401", path, auth, code)
						continue
					}
					if ch := h.Values("WWW-Authenticate"); len(ch) != 2 || !strings.HasPrefix(ch[0], "Bearer ") || !strings.HasPrefix(ch[1], "Basic ") {
						t.Errorf("GET %s: WWW-Authenticate %q, want a Bearer and a Basic challenge", path, ch)
					}
					if strings.Contains(body, testToken) {
						t.Errorf("GET %s: the refusal shows the token", path)
					}
				}
				for _, auth := range []string{"Bearer " + testToken, "bearer  " + testToken, basic("", testToken), basic("ops", testToken)} {
					if code, _, _ := adminGet(t, srv.Client(), srv.URL+path, auth); code != http.StatusOK {
						t.Errorf("GET %s with %q: status %d, want 200", path, auth, code)
					}
				}
			}
			for _, path := range open {
				if code, _, _ := adminGet(t, srv.Client(), srv.URL+path, ""); code != http.StatusOK {
					t.Errorf("GET %s without a token: status %d, want 200 (not protected)", path, code)
				}
			}
		})
	}
}

// TestAdminJSON: /json counts hits, so it needs a credential whenever one
// is configured, even with metrics and probes left open.
func TestAdminJSON(t *testing.T) {
	tokenFile := writeFile(t, t.TempDir(), "token", testToken)
	guarded, err := adminauth.New(adminauth.Settings{Auth: adminauth.Auth{TokenFile: tokenFile}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		access *adminauth.Access
		auth   string
		want   int
	}{
		{"open listener", nil, "", http.StatusOK},
		{"token set, none sent", guarded, "", http.StatusUnauthorized},
		{"token set, wrong one", guarded, "Bearer wrong-token-0123456789", http.StatusUnauthorized},
		{"token set and sent", guarded, "Bearer " + testToken, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(testAdmin(tc.access))
			defer srv.Close()
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/json", strings.NewReader("{}"))
			if err != nil {
				t.Fatal(err)
			}
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("POST /json: status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}

func TestAdminOpenWithoutAuth(t *testing.T) {
	srv := httptest.NewServer(testAdmin(nil))
	defer srv.Close()
	for _, path := range append(append(privatePaths, healthPaths...), "/metrics") {
		if code, _, _ := adminGet(t, srv.Client(), srv.URL+path, ""); code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", path, code)
		}
	}
}

// testPKI is a CA, a server certificate for 127.0.0.1, and client
// certificates signed by the CA and by another CA.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string
	client, otherClient       tls.Certificate
	roots                     *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	ca := testcerts.MustCA(t, testcerts.Options{CommonName: "admin CA"})
	other := testcerts.MustCA(t, testcerts.Options{CommonName: "other CA"})
	p.roots = testcerts.Pool(ca)
	f := testcerts.MustWriteFiles(t, p.dir, ca, testcerts.MustIssue(t, ca, testcerts.Server("admin", "127.0.0.1")))
	p.caFile, p.certFile, p.keyFile = f.CAFile, f.CertFile, f.KeyFile
	p.client = testcerts.MustIssue(t, ca, testcerts.Client("operator")).TLS()
	p.otherClient = testcerts.MustIssue(t, other, testcerts.Client("intruder")).TLS()
	return p
}

// TestAdminMutualTLS: a client certificate signed by client_ca_file opens
// the protected paths; without one they answer 401 while the probes stay
// open; a certificate signed by another CA fails the handshake.
func TestAdminMutualTLS(t *testing.T) {
	p := newTestPKI(t)
	a, err := adminauth.New(adminauth.Settings{
		TLS: certs.Settings{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(testAdmin(a))
	srv.TLS = a.TLSConfig()
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake
	srv.StartTLS()
	defer srv.Close()

	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots, Certificates: certs}}}
	}
	for _, path := range privatePaths {
		if code, _, _ := adminGet(t, client(p.client), srv.URL+path, ""); code != http.StatusOK {
			t.Errorf("GET %s with the operator's certificate: status %d, want 200", path, code)
		}
		code, h, _ := adminGet(t, client(), srv.URL+path, "")
		if code != http.StatusUnauthorized {
			t.Errorf("GET %s without a certificate: status %d, want 401", path, code)
		}
		if h.Get("WWW-Authenticate") != "" {
			t.Errorf("GET %s: WWW-Authenticate %q without a token to ask for", path, h.Get("WWW-Authenticate"))
		}
	}
	for _, path := range append(healthPaths, "/metrics") {
		if code, _, _ := adminGet(t, client(), srv.URL+path, ""); code != http.StatusOK {
			t.Errorf("GET %s without a certificate: status %d, want 200 (not protected)", path, code)
		}
	}
	// GetClientCertificate sends the certificate even though the server
	// names other CAs (a client picking from Certificates would send none).
	intruder := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &p.otherClient, nil }}}}
	resp, err := intruder.Get(srv.URL + "/config")
	if err == nil {
		resp.Body.Close()
		t.Fatal("a certificate signed by another CA was accepted")
	}
	var alert tls.AlertError
	if !errors.As(err, &alert) && !strings.Contains(err.Error(), "certificate") {
		t.Errorf("another CA: error %v, want a TLS certificate refusal", err)
	}
}

// TestAdminTokenOrCertificate: with both credentials set, either opens the
// protected paths.
func TestAdminTokenOrCertificate(t *testing.T) {
	p := newTestPKI(t)
	tokenFile := writeFile(t, p.dir, "token", testToken)
	a, err := adminauth.New(adminauth.Settings{
		TLS:  certs.Settings{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, MinVersion: "1.3"},
		Auth: adminauth.Auth{TokenFile: tokenFile},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(testAdmin(a))
	srv.TLS = a.TLSConfig()
	srv.StartTLS()
	defer srv.Close()
	noCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots}}}
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.roots, Certificates: []tls.Certificate{p.client}}}}
	for _, c := range []struct {
		name   string
		client *http.Client
		auth   string
		want   int
	}{
		{"certificate", withCert, "", 200},
		{"token", noCert, "Bearer " + testToken, 200},
		{"neither", noCert, "", 401},
		{"wrong token", noCert, "Bearer nope-nope-nope-nope", 401},
	} {
		if code, _, _ := adminGet(t, c.client, srv.URL+"/api/v1/rules", c.auth); code != c.want {
			t.Errorf("%s: status %d, want %d", c.name, code, c.want)
		}
	}
}

func TestSettingsValidate(t *testing.T) {
	p := newTestPKI(t)
	good := writeFile(t, p.dir, "token", testToken)
	short := writeFile(t, p.dir, "short", "tiny-secret\n")
	spaced := writeFile(t, p.dir, "spaced", "0123456789 abcdefghij\n")
	missing := filepath.Join(p.dir, "missing")
	for _, tc := range []struct {
		name string
		s    adminauth.Settings
		want []string // "path: message fragment"
	}{
		{"zero", adminauth.Settings{}, nil},
		{"token", adminauth.Settings{Auth: adminauth.Auth{TokenFile: good}, ProtectMetrics: true, ProtectHealth: true}, nil},
		{"mtls", adminauth.Settings{TLS: certs.Settings{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, MinVersion: "1.3"}}, nil},
		{"short token", adminauth.Settings{Auth: adminauth.Auth{TokenFile: short}}, []string{"auth.token_file: " + short + " holds a token of 11 characters: expected at least 16"}},
		{"spaced token", adminauth.Settings{Auth: adminauth.Auth{TokenFile: spaced}}, []string{"auth.token_file: " + spaced + " holds white space"}},
		{"missing token", adminauth.Settings{Auth: adminauth.Auth{TokenFile: missing}}, []string{"auth.token_file: open " + missing}},
		{"ca without tls", adminauth.Settings{TLS: certs.Settings{ClientCAFile: p.caFile}}, []string{"tls: cert_file and key_file are required"}},
		{"bad ca", adminauth.Settings{TLS: certs.Settings{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: good}}, []string{"tls.client_ca_file: "}},
		{"cert without key", adminauth.Settings{TLS: certs.Settings{CertFile: p.certFile}}, []string{"tls.key_file: missing"}},
		{"bad version", adminauth.Settings{TLS: certs.Settings{CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: "1.1"}}, []string{`tls.min_version: unknown value "1.1": choices are 1.2, 1.3`}},
		{"mismatched pair", adminauth.Settings{TLS: certs.Settings{CertFile: p.caFile, KeyFile: p.keyFile}}, []string{"tls: cert_file " + p.caFile + " and key_file"}},
		{"protect without auth", adminauth.Settings{ProtectMetrics: true, ProtectHealth: true}, []string{"protect_metrics: needs a credential", "protect_health: needs a credential"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			field.Each(tc.s.Validate(), func(path string, err error) { got = append(got, path+": "+err.Error()) })
			if len(got) != len(tc.want) {
				t.Fatalf("got errors %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Errorf("error %q, want it to start with %q", got[i], tc.want[i])
				}
				if strings.Contains(got[i], "tiny-secret") || strings.Contains(got[i], "abcdefghij") {
					t.Errorf("error %q quotes the token file's contents", got[i])
				}
			}
			if _, err := adminauth.New(tc.s, nil); (err == nil) != (tc.want == nil) {
				t.Errorf("adminauth.New error %v, want one iff Validate fails", err)
			}
		})
	}
}
