package reload

import (
	"reflect"
	"slices"
	"strings"

	"github.com/extauthz/extauthz/pkg/config"
)

// live lists the settings a reload applies: the rules and the
// request-handling settings, which the server reads from the snapshot it
// swaps in. Every other setting is built into something long-lived (the
// listeners, the gRPC server, the backend chain and its breakers, the
// logger's handler) and needs a restart; a setting added to config.Config
// later is treated as such until it is listed here, so a change is never
// silently ignored.
var live = map[string]bool{
	"default_algorithm":         true,
	"count_mode":                true,
	"near_limit_ratio":          true,
	"response_headers":          true,
	"over_limit_body":           true,
	"upstream_headers":          true,
	"shadow_mode":               true,
	"quota_mode":                true,
	"response_dynamic_metadata": true,
	"merge_domain_config":       true, // how the rule files compile into the rules
	"failure_mode":              true,
	"domain_failure_modes":      true,
	"domains":                   true,
	"rules_dir":                 true,
	"runtime":                   true,
	"chains_by_unit":            true, // compiled into the rules; the chains themselves need a restart
	"authz":                     true, // but see presence below
	"log.level":                 true,
	"limits.max_descriptors":    true,
	"limits.max_entries":        true,
	"limits.max_key_length":     true,
	"limits.max_value_length":   true,
	"limits.max_hits_addend":    true,
}

// partial lists the sections that mix live and restart-only settings: they
// are compared setting by setting.
var partial = map[string]bool{"log": true, "limits": true}

// presence lists the live sections (pointers) whose presence cannot change
// live: turning them on or off adds or removes a gRPC service.
var presence = map[string]bool{"authz": true}

// RestartRequired returns the settings (key paths of the server file, e.g.
// "grpc_addr", "backends", "log.format") that differ between old and new
// but take effect only on restart, sorted. The caller swaps new in for what
// can change live and logs these; they keep their old values until the
// process restarts. Pass as old the configuration the process started
// with (not the previous reload's), since that is what runs: a change
// reverted later then stops being reported. Secrets are compared too (the
// values, never printed).
func RestartRequired(old, new *config.Config) []string {
	if old == nil || new == nil {
		return nil
	}
	var out []string
	compare(reflect.ValueOf(old).Elem(), reflect.ValueOf(new).Elem(), "", &out)
	slices.Sort(out)
	return out
}

// compare appends to out the restart-only settings of structs a and b that
// differ.
func compare(a, b reflect.Value, prefix string, out *[]string) {
	t := a.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "-" || !f.IsExported() && !f.Anonymous {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if strings.Contains(opts, "inline") {
			compare(a.Field(i), b.Field(i), prefix, out)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		path := prefix + name
		fa, fb := a.Field(i), b.Field(i)
		switch {
		case presence[path]:
			if fa.IsNil() != fb.IsNil() {
				*out = append(*out, path)
			}
		case live[path]:
		case partial[path] && fa.Kind() == reflect.Struct:
			compare(fa, fb, path+".", out)
		case !reflect.DeepEqual(fa.Interface(), fb.Interface()):
			*out = append(*out, path)
		}
	}
}
