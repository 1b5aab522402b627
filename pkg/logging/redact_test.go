package logging_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/extauthz/extauthz/pkg/backends/redisstore"
	"github.com/extauthz/extauthz/pkg/config"
	"github.com/extauthz/extauthz/pkg/logging"
)

func TestSecretsRedacted(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log, _, err := logging.New(&buf, logging.Settings{Format: format})
			if err != nil {
				t.Fatal(err)
			}
			log.Info("connecting", "password", config.Secret("hunter2"), "backend", redisstore.Config{Password: "hunter2"})
			if out := buf.String(); strings.Contains(out, "hunter2") || !strings.Contains(out, config.RedactedText) {
				t.Errorf("got %q, want the secret redacted", out)
			}
		})
	}
}
