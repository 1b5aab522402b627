package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/extauthz/extauthz/pkg/backends/memstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/server"
	"github.com/extauthz/extauthz/pkg/wire"
)

// TestAuthzShareCounters checks authz.tenant.share_counters from the
// server file to Check: by default two tenants behind one client IP count
// apart; with share_counters they share the per-IP counter.
func TestAuthzShareCounters(t *testing.T) {
	tests := []struct {
		name  string
		share bool
		want  []bool // admitted, per Check: tenant t1, then t2, from one IP limited to 1/min
	}{
		{name: "default: per-tenant counters", share: false, want: []bool{true, true}},
		{name: "share_counters: true", share: true, want: []bool{true, false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := config.Load(strings.NewReader(fmt.Sprintf(`domains:
  - domain: web
    descriptors:
      - key: remote_address
        rate_limit: {unit: minute, requests_per_unit: 1}
authz:
  domain: web
  tenant:
    sources: [{header: x-tenant, trusted: true}]   # set by a proxy in front of extauthz
    share_counters: %v
  descriptors:
    - name: per_ip
      entries: [{from: client_ip}]
`, tc.share)), "test.yaml")
			if err != nil {
				t.Fatal(err)
			}
			snap, err := wire.NewSnapshot(cfg)
			if err != nil {
				t.Fatal(err)
			}
			mem, err := memstore.New(memstore.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer mem.Close()
			srv, err := server.New(server.Options{Store: mem, Logger: slogDiscard()}, snap)
			if err != nil {
				t.Fatal(err)
			}
			a, err := server.NewAuthz(srv)
			if err != nil {
				t.Fatal(err)
			}
			for i, tenant := range []string{"t1", "t2"} {
				resp, err := a.Check(context.Background(), checkFrom("198.51.100.7", map[string]string{"x-tenant": tenant}))
				if err != nil {
					t.Fatal(err)
				}
				if got := resp.GetOkResponse() != nil; got != tc.want[i] {
					t.Errorf("Check of tenant %s: got admitted %v, want %v", tenant, got, tc.want[i])
				}
			}
		})
	}
}

// checkFrom is a CheckRequest for GET / from peer with headers.
func checkFrom(peer string, headers map[string]string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: peer, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 40000}},
		}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example", Path: "/", Headers: headers,
		}},
	}}
}
