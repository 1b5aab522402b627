package xdsrules

import (
	"strings"
	"testing"
	"time"

	"github.com/extauthz/extauthz/pkg/certs"
	"github.com/extauthz/extauthz/pkg/field"
	"github.com/extauthz/extauthz/pkg/secret"
)

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		name     string
		s        Settings
		wantPath string
		wantErr  string // "": valid
	}{
		{name: "address only", s: Settings{Address: "xds.example:18000"}},
		{name: "ipv6", s: Settings{Address: "[::1]:18000", NodeID: "n", NodeCluster: "c", NodeMetadata: map[string]string{"zone": "a"}, Headers: map[string]secret.String{"authorization": "Bearer x"}}},
		{name: "missing address", s: Settings{}, wantPath: "address", wantErr: "missing"},
		{name: "no port", s: Settings{Address: "xds.example"}, wantPath: "address", wantErr: "HOST:PORT"},
		{name: "port 0", s: Settings{Address: "xds.example:0"}, wantPath: "address", wantErr: "port"},
		{name: "url", s: Settings{Address: "http://xds:1/"}, wantPath: "address", wantErr: "HOST:PORT"},
		{name: "node id with newline", s: Settings{Address: "x:1", NodeID: "a\nb"}, wantPath: "node_id", wantErr: "control characters"},
		{name: "empty metadata key", s: Settings{Address: "x:1", NodeMetadata: map[string]string{"": "v"}}, wantPath: "node_metadata", wantErr: "empty key"},
		{name: "upper-case header", s: Settings{Address: "x:1", Headers: map[string]secret.String{"X-Token": "v"}}, wantPath: "headers.X-Token", wantErr: "lower case"},
		{name: "reserved header", s: Settings{Address: "x:1", Headers: map[string]secret.String{"grpc-timeout": "v"}}, wantPath: "headers.grpc-timeout", wantErr: "set by gRPC"},
		{name: "binary header", s: Settings{Address: "x:1", Headers: map[string]secret.String{"x-bin": "v"}}, wantPath: "headers.x-bin", wantErr: "binary"},
		{name: "header value with newline", s: Settings{Address: "x:1", Headers: map[string]secret.String{"x-token": "a\r\nb"}}, wantPath: "headers.x-token", wantErr: "printable"},
		{name: "negative backoff", s: Settings{Address: "x:1", InitialBackoff: -time.Second}, wantPath: "initial_backoff", wantErr: "negative"},
		{name: "max below initial", s: Settings{Address: "x:1", InitialBackoff: time.Minute, MaxBackoff: time.Second}, wantPath: "max_backoff", wantErr: "below initial_backoff"},
		{name: "huge messages", s: Settings{Address: "x:1", MaxMessageBytes: 1 << 30}, wantPath: "max_message_bytes", wantErr: "out of range"},
		{name: "tls half a pair", s: Settings{Address: "x:1", TLS: certs.ClientSettings{CertFile: "a.crt"}}, wantPath: "tls", wantErr: "both cert_file and key_file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.s.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: got %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Validate: got %v, want an error containing %q", err, tc.wantErr)
			}
			var paths []string
			field.Each(err, func(p string, _ error) { paths = append(paths, p) })
			if len(paths) != 1 || paths[0] != tc.wantPath {
				t.Errorf("Validate: error paths %q, want [%q]", paths, tc.wantPath)
			}
			if strings.Contains(err.Error(), "a\r\nb") {
				t.Errorf("Validate: the error shows a header value (a secret): %v", err)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	got := Settings{Address: "x:1"}.WithDefaults()
	want := Settings{Address: "x:1", NodeID: DefaultNodeID, InitialBackoff: DefaultInitialBackoff, MaxBackoff: DefaultMaxBackoff, MaxMessageBytes: DefaultMaxMessageBytes}
	if got.NodeID != want.NodeID || got.InitialBackoff != want.InitialBackoff || got.MaxBackoff != want.MaxBackoff || got.MaxMessageBytes != want.MaxMessageBytes {
		t.Errorf("WithDefaults: got %+v, want %+v", got, want)
	}
	// A long initial backoff raises the default maximum with it.
	if got := (Settings{Address: "x:1", InitialBackoff: time.Minute}).WithDefaults().MaxBackoff; got != time.Minute {
		t.Errorf("WithDefaults with initial_backoff 1m: max_backoff %v, want 1m", got)
	}
}
