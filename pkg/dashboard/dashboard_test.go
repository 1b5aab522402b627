package dashboard

import (
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct {
		path, wantType, wantBody string
		wantCode                 int
	}{
		{"/", "text/html", `<script src="assets/app.js" defer></script>`, 200},
		{"/assets/app.js", "text/javascript", `"use strict";`, 200},
		{"/assets/app.css", "text/css", "prefers-color-scheme: dark", 200},
		{"/assets/", "", "", 404},
		{"/assets/index.html", "", "", 404},
		{"/index.html", "", "", 404},
		{"/other", "", "", 404},
	} {
		t.Run(tc.path, func(t *testing.T) {
			resp, err := srv.Client().Get(srv.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.wantCode)
			}
			if tc.wantCode != 200 {
				return
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tc.wantType) {
				t.Errorf("content type %q, want %q", got, tc.wantType)
			}
			if !strings.Contains(string(body), tc.wantBody) {
				t.Errorf("body does not contain %q", tc.wantBody)
			}
			if got := resp.Header.Get("Content-Security-Policy"); !strings.Contains(got, "script-src 'self'") || strings.Contains(got, "unsafe") {
				t.Errorf("Content-Security-Policy %q: want scripts from the page's origin only", got)
			}
			if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options %q, want nosniff", got)
			}
		})
	}
}

// TestAssetsSelfContained: the page loads nothing from elsewhere and its
// script never parses data as HTML (values shown are client-controlled).
func TestAssetsSelfContained(t *testing.T) {
	for _, name := range []string{"assets/index.html", "assets/app.js", "assets/app.css"} {
		data, err := assets.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		for _, bad := range []*regexp.Regexp{
			regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`),
			regexp.MustCompile(`@import|url\(\s*["']?(https?:)?//`),
			regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function`),
			regexp.MustCompile(`(?i)<script>|\son[a-z]+=`), // inline script or handler: refused by the CSP anyway
		} {
			if loc := bad.FindStringIndex(text); loc != nil {
				t.Errorf("%s: %q matches %s", name, text[loc[0]:loc[1]], bad)
			}
		}
	}
	// The page's only script is the embedded one.
	html, _ := assets.ReadFile("assets/index.html")
	if n := strings.Count(string(html), "<script"); n != 1 {
		t.Errorf("index.html has %d script elements, want 1", n)
	}
}
