// Package dashboard serves the admin listener's web page of traffic
// insight: live per-rule rates, the top offenders, an offender's detail and
// the blocking history, read by the page from the JSON API under /api/v1
// (package insight). Its HTML, CSS and JavaScript are embedded: no CDN, no
// external font, no build step.
package dashboard

import (
	"embed"
	"net/http"
)

//go:embed assets/index.html assets/app.css assets/app.js
var assets embed.FS

// contentSecurityPolicy lets the page load only its own assets and call
// only its own origin: values in the API are chosen by clients, and even a
// rendering mistake must not run a script from elsewhere.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the dashboard: GET / is the page, /assets/NAME its files;
// other paths are 404. Mount it at the root of the admin listener.
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		secure(w)
		http.ServeFileFS(w, r, assets, "assets/index.html")
	})
	mux.HandleFunc("GET /assets/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		if name != "app.css" && name != "app.js" {
			http.NotFound(w, r)
			return
		}
		secure(w)
		http.ServeFileFS(w, r, assets, "assets/"+name)
	})
	return mux
}

// secure sets the headers that keep the page from being framed, sniffed or
// fed scripts from elsewhere.
func secure(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}
