package extract

import (
	"errors"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/field"
)

// TestUntrustedTenantHeader (issue 16, finding 1): a header tenant source
// must say that a proxy sets it (trusted: true); without it, New refuses
// the settings with a field error that says what to do.
func TestUntrustedTenantHeader(t *testing.T) {
	_, err := New(Settings{
		Tenant:      TenantOptions{Sources: []TenantSource{{Host: HostListed}, {Header: "X-Tenant-Id"}}},
		Descriptors: oneEntry(EntrySpec{From: FromTenant}).Descriptors,
	}, nil)
	var fe *field.Error
	if !errors.As(err, &fe) || fe.Path != "tenant.sources[1].header" || !errors.Is(err, ErrInvalidSettings) {
		t.Fatalf("got %v, want a field error at tenant.sources[1].header", err)
	}
	for _, want := range []string{"a client can send any x-tenant-id", "set trusted: true only if a proxy in front of extauthz sets this header and removes the client's", "or remove this source"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	_, err = New(Settings{
		Tenant:      TenantOptions{Sources: []TenantSource{{Host: HostListed, Trusted: true}}},
		Descriptors: oneEntry(EntrySpec{From: FromTenant}).Descriptors,
	}, nil)
	if !errors.As(err, &fe) || fe.Path != "tenant.sources[0].trusted" {
		t.Errorf("trusted host source: got %v, want a field error at tenant.sources[0].trusted", err)
	}
}

// TestTenantNamespace (issue 16, finding 1): counters are namespaced only
// by a tenant that is authenticated: a listed key's tenant or a trusted
// header's. A host (listed or first label) gives the tenant, its tier and
// its quota, but never a namespace; share_counters turns namespacing off.
func TestTenantNamespace(t *testing.T) {
	ids := identitiesForTest(t)
	keys := APIKeyOptions{Sources: []KeySource{{Header: "x-api-key"}}}
	tests := []struct {
		name       string
		tenant     TenantOptions
		req        Request
		wantTenant string
		wantNS     string
	}{
		{name: "listed key's tenant", tenant: TenantOptions{Sources: []TenantSource{{Host: HostListed}}},
			req: Request{Headers: map[string]string{"x-api-key": "key-pro-123"}}, wantTenant: "acme", wantNS: "acme"},
		{name: "trusted header, unlisted tenant", tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}},
			req: Request{Headers: map[string]string{"x-tenant": "initech"}}, wantTenant: "initech", wantNS: "initech"},
		{name: "listed host", tenant: TenantOptions{Sources: []TenantSource{{Host: HostListed}}},
			req: Request{Host: "api.acme.example"}, wantTenant: "acme"},
		{name: "first label", tenant: TenantOptions{Sources: []TenantSource{{Host: HostFirstLabel}}},
			req: Request{Host: "globex.api.example"}, wantTenant: "globex"},
		{name: "shared counters", tenant: TenantOptions{Sources: []TenantSource{{Header: "x-tenant", Trusted: true}}, ShareCounters: true},
			req: Request{Headers: map[string]string{"x-tenant": "initech"}}, wantTenant: "initech"},
		{name: "listed key's tenant, shared counters", tenant: TenantOptions{ShareCounters: true},
			req: Request{Headers: map[string]string{"x-api-key": "key-pro-123"}}, wantTenant: "acme"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := mustExtractor(t, ids, Settings{APIKey: keys, Tenant: tc.tenant, Descriptors: oneEntry(EntrySpec{From: FromGeneric, Value: "x"}).Descriptors})
			var e Extraction
			x.Extract(&tc.req, extractNow, &e)
			if e.Tenant != tc.wantTenant || e.Namespace != tc.wantNS {
				t.Errorf("got tenant %q namespace %q, want %q and %q", e.Tenant, e.Namespace, tc.wantTenant, tc.wantNS)
			}
		})
	}
}

// TestAppendKeyID (issue 16, finding 2): a key's canonical form is the id
// of the active listing with its digest, else its hash; an id is not a key.
func TestAppendKeyID(t *testing.T) {
	ids := identitiesForTest(t)
	for _, tc := range []struct {
		ids       *Identities
		key, want string
	}{
		{ids, "key-pro-123", "acme-prod"},
		{ids, "acme-prod", HashValue("acme-prod")},
		{ids, "key-old-789", HashValue("key-old-789")}, // expired
		{ids, strings.Repeat("x", 300), HashValue(strings.Repeat("x", 300))},
		{nil, "key-pro-123", HashValue("key-pro-123")},
	} {
		if got := string(tc.ids.AppendKeyID([]byte("p:"), tc.key, extractNow)); got != "p:"+tc.want {
			t.Errorf("AppendKeyID(%.20q): got %q, want %q", tc.key, got, "p:"+tc.want)
		}
	}
}

// TestRuleKeyValue (issue 16, finding 8): rule-file values under the API
// key descriptor key load canonical; canonical values and patterns stay.
func TestRuleKeyValue(t *testing.T) {
	ids := identitiesForTest(t)
	for v, want := range map[string]string{
		"key-pro-123":    "acme-prod",
		"key-old-789":    "old", // listed, though expired
		"demo-secret":    HashValue("demo-secret"),
		"acme-prod":      "acme-prod",
		HashValue("k"):   HashValue("k"),
		"sha256:not-hex": HashValue("sha256:not-hex"),
		"acme-*":         "acme-*",
		"":               "",
	} {
		if got := ids.RuleKeyValue(v); got != want {
			t.Errorf("RuleKeyValue(%q) = %q, want %q", v, got, want)
		}
	}
	if got := (*Identities)(nil).RuleKeyValue("acme-prod"); got != HashValue("acme-prod") {
		t.Errorf("nil: got %q", got)
	}
}
