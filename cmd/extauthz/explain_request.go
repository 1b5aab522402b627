package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"time"

	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/descriptor"
	"github.com/extauthz/extauthz/pkg/extract"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/wire"
)

// headerFlags collects repeated --header name:value flags; repeated names
// are joined with "," as Envoy joins them.
type headerFlags map[string]string

func (f headerFlags) String() string { return fmt.Sprint(map[string]string(f)) }

func (f headerFlags) Set(s string) error {
	name, value, ok := strings.Cut(s, ":")
	name = strings.ToLower(strings.TrimSpace(name))
	if !ok || name == "" {
		return fmt.Errorf("header %q: want name:value", s)
	}
	value = strings.TrimSpace(value)
	if prev, dup := f[name]; dup {
		value = prev + "," + value
	}
	f[name] = value
	return nil
}

// requestFlags are the explain flags that describe an HTTP request, which
// the authz: extractors turn into descriptors.
type requestFlags struct {
	ip, method, host, path string
	headers                headerFlags
}

// register adds --ip, --header, --method, --host and --path to fs.
func (f *requestFlags) register(fs *flag.FlagSet) {
	f.headers = headerFlags{}
	fs.StringVar(&f.ip, "ip", "", "the request's peer address, as Envoy's ext_authz sends it (with --header x-forwarded-for:... behind proxies)")
	fs.Var(f.headers, "header", "a request header as name:value (repeatable)")
	fs.StringVar(&f.method, "method", "GET", "the request's method")
	fs.StringVar(&f.host, "host", "", "the request's host")
	fs.StringVar(&f.path, "path", "", "the request's path, with its query string")
}

// set reports whether any request flag was given, i.e. explain should
// explain a request rather than --descriptor flags.
func (f *requestFlags) set() bool {
	return f.ip != "" || f.path != "" || f.host != "" || len(f.headers) > 0
}

// request builds the extractors' view of the request.
func (f *requestFlags) request() (extract.Request, error) {
	r := extract.Request{Method: f.method, Host: f.host, Headers: f.headers}
	r.SetPathQuery(f.path)
	if f.ip != "" {
		a, err := netip.ParseAddr(f.ip)
		if err != nil {
			return r, fmt.Errorf("--ip %q is not an IP address", f.ip)
		}
		r.Peer = a
	}
	return r, nil
}

// explainRequest prints what the authz: section makes of the request in f:
// the client address, API key (never in clear), tenant and tier, the
// descriptors or the denial, then how the rules decide each descriptor and
// the limit a tiered rule resolves to.
func explainRequest(w io.Writer, cfg *config.Config, f *requestFlags, now time.Time) error {
	st, err := wire.AuthzSettings(cfg)
	switch {
	case err != nil:
		return err
	case st == nil:
		return errors.New("explain: --ip, --header, --host and --path need an authz: section in the config")
	}
	x := st.Extractor
	r, err := f.request()
	if err != nil {
		return err
	}
	var ext extract.Extraction
	x.Extract(&r, now, &ext)

	var b strings.Builder
	writeIdentity(&b, x, &r, &ext)
	if ext.Denied {
		fmt.Fprintf(&b, "denied with HTTP %d: %s\n", ext.DenyStatus, ext.DenyReason)
		_, err := io.WriteString(w, b.String())
		return err
	}
	writeDescriptors(&b, x, &ext)
	if _, err := io.WriteString(w, b.String()); err != nil || len(ext.Descriptors) == 0 {
		return err
	}
	if err := server.Explain(w, cfg.Rules, x.Domain(), ext.Descriptors); err != nil {
		return err
	}
	return writeResolutions(w, cfg.Rules, x.Domain(), &ext, now)
}

// writeIdentity writes the request line and what the extractor resolved of
// the client: its address, API key (never in clear), tenant and tier.
func writeIdentity(b *strings.Builder, x *extract.Extractor, r *extract.Request, ext *extract.Extraction) {
	fmt.Fprintf(b, "request: %s %s%s", r.Method, r.Host, r.Path)
	if r.Query != "" {
		b.WriteString("?" + r.Query)
	}
	if r.Peer.IsValid() {
		fmt.Fprintf(b, " from %s", r.Peer)
	}
	b.WriteByte('\n')
	if a, ok := x.ClientIP(r); ok {
		fmt.Fprintf(b, "client ip: %s\n", a)
	} else {
		b.WriteString("client ip: none (no peer, or X-Forwarded-For does not reach the trusted hop)\n")
	}
	switch {
	case ext.APIKey != nil:
		fmt.Fprintf(b, "api key: %s (listed)\n", ext.APIKeyID)
	case ext.APIKeyID != "":
		fmt.Fprintf(b, "api key: %s (unlisted; shown hashed)\n", ext.APIKeyID)
	default:
		b.WriteString("api key: none\n")
	}
	switch {
	case ext.TenantIdentity != nil:
		fmt.Fprintf(b, "tenant: %s (listed)\n", ext.Tenant)
	case ext.Tenant != "":
		fmt.Fprintf(b, "tenant: %s (unlisted)\n", ext.Tenant)
	default:
		b.WriteString("tenant: none\n")
	}
	if ext.Tier != "" {
		fmt.Fprintf(b, "tier: %s\n", ext.Tier)
	}
}

// writeDescriptors writes the descriptors ext holds, and the named ones
// that were skipped.
func writeDescriptors(b *strings.Builder, x *extract.Extractor, ext *extract.Extraction) {
	fmt.Fprintf(b, "descriptors of domain %q:\n", x.Domain())
	produced := make(map[string]bool, len(ext.Names))
	for i, d := range ext.Descriptors {
		fmt.Fprintf(b, "  %s: %s\n", ext.Names[i], d)
		produced[ext.Names[i]] = true
	}
	for _, spec := range x.Settings().Descriptors {
		if spec.Name != "" && !produced[spec.Name] {
			fmt.Fprintf(b, "  %s: skipped (a source had no value)\n", spec.Name)
		}
	}
	if len(ext.Descriptors) == 0 {
		b.WriteString("nothing to count: Check answers OK\n")
	}
}

// writeResolutions writes the limit each tiered rule resolves to for the
// descriptors of ext, and why; nothing when no rule is tiered.
func writeResolutions(w io.Writer, rules *descriptor.Set, domain string, ext *extract.Extraction, now time.Time) error {
	var b strings.Builder
	for i, d := range ext.Descriptors {
		rule, ok := rules.Match(domain, d)
		if !ok || rule.Tiers == nil || rule.Unlimited {
			continue
		}
		res := rule.ResolveRequest(d, now, ext.APIKey.Listing(), ext.TenantIdentity.Listing())
		fmt.Fprintf(&b, "  descriptor %d resolves to %d per %s", i+1, res.Limit.Requests, res.Unit)
		switch {
		case res.Override != nil:
			fmt.Fprintf(&b, " (override of %s", res.OverrideOf)
			if !res.Override.Expires.IsZero() {
				fmt.Fprintf(&b, " until %s", res.Override.Expires.Format(time.RFC3339))
			}
			b.WriteString(")")
		case res.Tier != "":
			fmt.Fprintf(&b, " (tier %s)", res.Tier)
		default:
			b.WriteString(" (the rule's own limit: no tier or override applies)")
		}
		b.WriteByte('\n')
	}
	if b.Len() == 0 {
		return nil
	}
	_, err := io.WriteString(w, "tiers and overrides:\n"+b.String())
	return err
}
