package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// topOptions are the flags of top.
type topOptions struct {
	addr, tokenFile, window string
	tls                     tlsFlags
	interval                time.Duration
	limit                   int
	once                    bool
	base                    *url.URL
	token                   string
	client                  *http.Client
}

const topSynopsis = "top [--addr HOST:PORT|URL] [--token-file F] [--interval 2s] [--window 5m|1h|24h|7d] [--limit N] [--once]"

// topCmd is `extauthz top`: the admin listener's traffic insight (rules with
// their rates, top offenders) in the terminal, redrawn in place every
// --interval like top; --once prints one frame without escape codes.
func topCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var o topOptions
	fs := newFlagSet("top", topSynopsis, stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "admin listener: HOST:PORT, or a URL (https://HOST:PORT for admin TLS)")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the admin bearer token (admin.auth.token_file)")
	o.tls.register(fs, "admin listener")
	fs.DurationVar(&o.interval, "interval", 2*time.Second, "time between refreshes")
	fs.StringVar(&o.window, "window", "5m", "offenders window: 5m, 1h, 24h or 7d")
	fs.IntVar(&o.limit, "limit", 20, "offenders shown, 1 to 100")
	fs.BoolVar(&o.once, "once", false, "print one frame, without escape codes, and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := o.setup(); err != nil {
		fmt.Fprintf(stderr, "extauthz top: %v\n", err)
		fs.Usage()
		return errUsage
	}
	if o.once {
		frame, err := o.frame(ctx)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, frame)
		return err
	}
	return o.loop(ctx, stdout)
}

// setup checks the flags and builds the client.
func (o *topOptions) setup() error {
	switch o.window {
	case "5m", "1h", "24h", "7d":
	default:
		return fmt.Errorf("--window %q: expected 5m, 1h, 24h or 7d", o.window)
	}
	if o.limit < 1 || o.limit > 100 {
		return fmt.Errorf("--limit %d: expected 1 to 100", o.limit)
	}
	if o.interval < 100*time.Millisecond {
		return fmt.Errorf("--interval %v: expected at least 100ms", o.interval)
	}
	raw := o.addr
	if !strings.Contains(raw, "://") {
		scheme := "http"
		if o.tls.set() {
			scheme = "https"
		}
		raw = scheme + "://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("--addr %q: expected HOST:PORT or http(s)://HOST:PORT", o.addr)
	}
	o.base = u
	tc, err := o.tls.config()
	if err != nil {
		return err
	}
	o.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc}}
	if o.tokenFile != "" {
		data, err := os.ReadFile(o.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		o.token = strings.TrimSpace(string(data))
	}
	return nil
}

// loop redraws a frame every interval until ctx is done. A failed fetch is
// shown in place of the frame, and retried.
func (o *topOptions) loop(ctx context.Context, w io.Writer) error {
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for {
		frame, err := o.frame(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			frame = fmt.Sprintf("extauthz top  %s  %s\n\n%v\n", o.base.Redacted(), time.Now().UTC().Format(time.RFC3339), err)
		}
		// Home, the frame, then clear what the previous frame left below.
		if _, err := io.WriteString(w, "\x1b[H"+strings.ReplaceAll(frame, "\n", "\x1b[K\n")+"\x1b[J"); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// get decodes the JSON of path into v.
func (o *topOptions) get(ctx context.Context, path string, q url.Values, v any) error {
	u := o.base.JoinPath(path)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if o.token != "" {
		req.Header.Set("Authorization", "Bearer "+o.token)
	}
	resp, err := o.client.Do(req)
	if err != nil {
		return fmt.Errorf("top: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return fmt.Errorf("top: read %s: %w", path, err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fmt.Errorf("top: %s: 401 unauthorized: pass the admin token with --token-file, or a client certificate", path)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("top: %s: 404 not found: traffic insight is off on this server (insight.disabled), or --addr is not its admin listener", path)
	case resp.StatusCode != http.StatusOK:
		var e struct{ Error string }
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body[:min(len(body), 200)]))
		}
		return fmt.Errorf("top: %s: %s: %s", path, resp.Status, sanitize(e.Error, 200))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("top: %s: %w", path, err)
	}
	return nil
}

// insightHead is the part of every /api/v1 answer that says what it covers.
type insightHead struct {
	Scope       string    `json:"scope"`
	Replicas    int       `json:"replicas"`
	GeneratedAt time.Time `json:"generated_at"`
	// Warning, when set, says why the answer covers less than asked (e.g.
	// the shared store is unreachable).
	Warning string `json:"warning"`
}

type topRate struct{ Admitted, Refused float64 }

type topRules struct {
	insightHead
	Rules []struct {
		Domain, Rule string
		Rate1m       topRate `json:"rate_1m"`
		Rate5m       topRate `json:"rate_5m"`
		Totals       struct {
			Admitted, Refused, Shadow int64
			NearLimit                 int64 `json:"near_limit"`
		}
	}
}

type topOffenders struct {
	insightHead
	Window     string `json:"window"`
	ErrorBound int64  `json:"error_bound"`
	Offenders  []struct {
		Domain, Rule, Value string
		Refused, Admitted   int64
		LastSeen            time.Time `json:"last_seen"`
	}
}

// frame fetches the rules and the offenders and renders them.
func (o *topOptions) frame(ctx context.Context) (string, error) {
	var rules topRules
	if err := o.get(ctx, "/api/v1/rules", nil, &rules); err != nil {
		return "", err
	}
	var offs topOffenders
	q := url.Values{"window": {o.window}, "limit": {strconv.Itoa(o.limit)}}
	if err := o.get(ctx, "/api/v1/offenders", q, &offs); err != nil {
		return "", err
	}
	var b bytes.Buffer
	scope := "this replica only"
	if rules.Scope == "fleet" {
		scope = fmt.Sprintf("fleet, %d replicas", rules.Replicas)
	}
	fmt.Fprintf(&b, "extauthz top  %s  %s  %s\n", o.base.Redacted(), scope, rules.GeneratedAt.UTC().Format(time.RFC3339))
	if rules.Warning != "" {
		fmt.Fprintf(&b, "warning: %s\n", sanitize(rules.Warning, 200))
	}
	b.WriteString("\n")
	b.WriteString("RULES\n")
	if len(rules.Rules) == 0 {
		b.WriteString("No decisions yet.\n")
	} else {
		t := table{header: []string{"DOMAIN", "RULE", "ADMIT/S 1M", "REFUSE/S 1M", "REFUSE/S 5M", "ADMITTED", "REFUSED", "NEAR LIMIT", "SHADOW"}, num: [2]int{2, 9}}
		for _, r := range rules.Rules {
			t.add(sanitize(r.Domain, 24), sanitize(r.Rule, 32), rate(r.Rate1m.Admitted), rate(r.Rate1m.Refused), rate(r.Rate5m.Refused),
				strconv.FormatInt(r.Totals.Admitted, 10), strconv.FormatInt(r.Totals.Refused, 10),
				strconv.FormatInt(r.Totals.NearLimit, 10), strconv.FormatInt(r.Totals.Shadow, 10))
		}
		t.write(&b)
	}
	fmt.Fprintf(&b, "\nTOP OFFENDERS, last %s", o.window)
	if offs.ErrorBound > 0 {
		fmt.Fprintf(&b, " (counts may overstate by up to %d)", offs.ErrorBound)
	}
	b.WriteString("\n")
	if len(offs.Offenders) == 0 {
		fmt.Fprintf(&b, "No refusals in the last %s.\n", o.window)
		return b.String(), nil
	}
	t := table{header: []string{"CLIENT", "DOMAIN", "RULE", "REFUSED", "ADMITTED", "LAST SEEN"}, num: [2]int{3, 5}}
	for _, f := range offs.Offenders {
		t.add(sanitize(f.Value, 48), sanitize(f.Domain, 24), sanitize(f.Rule, 32),
			strconv.FormatInt(f.Refused, 10), strconv.FormatInt(f.Admitted, 10), since(offs.GeneratedAt, f.LastSeen))
	}
	t.write(&b)
	return b.String(), nil
}

// table lays out columns padded to their widest cell; the columns from
// index num[0] up to num[1] (excluded) are numbers, aligned right.
type table struct {
	header []string
	num    [2]int
	rows   [][]string
}

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) write(w *bytes.Buffer) {
	widths := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	for _, r := range append([][]string{t.header}, t.rows...) {
		var line strings.Builder
		for i, c := range r {
			pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c))
			if i > 0 {
				line.WriteString("  ")
			}
			if i >= t.num[0] && i < t.num[1] {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		w.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
}

// rate formats a per-second rate with two significant decimals at most.
func rate(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// since formats how long before now t was, as "12s ago".
func since(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case t.IsZero():
		return "-"
	case d < time.Second:
		return "now"
	case d < 90*time.Second:
		return fmt.Sprintf("%ds ago", int(d.Seconds()+0.5))
	case d < 90*time.Minute:
		return fmt.Sprintf("%dm ago", int(d.Minutes()+0.5))
	case d < 36*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()+0.5))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24+0.5))
}

// sanitize makes a client-chosen value safe to print on a terminal: control
// characters (escape sequences could rewrite the screen) and invalid UTF-8
// are shown escaped, and the result is cut to n runes.
func sanitize(s string, n int) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case unicode.IsPrint(r):
			b.WriteRune(r)
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
		i += size
	}
	out := b.String()
	if utf8.RuneCountInString(out) > n {
		out = string([]rune(out)[:n-1]) + "…"
	}
	return out
}
