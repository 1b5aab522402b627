// Package helm_test checks the Helm chart in helm/extauthz: helm lint and
// helm template for every values file in the chart's ci/ directory, the
// rendered manifests decoded strictly into Kubernetes API types, the
// rendered extauthz config loaded with pkg/config, the sidecar mode's Envoy
// config validated like the examples, and bad values rejected by the schema.
//
// Helm runs as a pinned Go module (helm.sh/helm/v3/cmd/helm@v3.22.0),
// installed once into the user cache directory; set HELM to use another
// binary. Without network access the tests skip, except when CI=true.
package helm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// helmModule is the Helm release the tests use.
const helmModule = "helm.sh/helm/v3/cmd/helm@v3.22.0"

// kubeVersion is the cluster version helm template assumes (a helm built
// by go install reports v1.20 otherwise, below the chart's kubeVersion).
const kubeVersion = "1.33.0"

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary returns the path of the pinned helm, installing it into the
// user cache directory on first use. It fails the test when CI=true and
// helm cannot be had, and skips it otherwise.
func helmBinary(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() { helmPath, helmErr = findHelm() })
	if helmErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("helm: %v", helmErr)
		}
		t.Skipf("helm unavailable (set HELM or allow go install): %v", helmErr)
	}
	return helmPath
}

func findHelm() (string, error) {
	if p := os.Getenv("HELM"); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	_, version, _ := strings.Cut(helmModule, "@")
	dir := filepath.Join(cache, "extauthz-tools", "helm-"+version)
	bin := filepath.Join(dir, "helm")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Install into a private directory, then rename: concurrent test
	// processes never see a half-written binary.
	tmp, err := os.MkdirTemp(dir, "install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", helmModule)
	cmd.Dir = tmp // outside the module: go install pkg@version ignores go.mod anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s: %w\n%s", helmModule, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "helm"), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// chartDir is the chart under test.
var chartDir = filepath.Join("..", "..", "helm", "extauthz")

// runHelm runs helm with args and returns its stdout; the error carries
// stderr.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// Keep helm away from the user's repositories and plugins.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s%s", strings.Join(args, " "), err, stderr.String(), stdout.String())
	}
	return stdout.String(), nil
}

// render runs helm template for values files and --set pairs (or
// --set-file, for pairs whose key starts with "file:").
func render(t *testing.T, valueFiles []string, set ...string) (string, error) {
	t.Helper()
	args := []string{"template", "rel", chartDir, "--namespace", "rl", "--kube-version", kubeVersion}
	for _, f := range valueFiles {
		args = append(args, "-f", f)
	}
	for _, s := range set {
		if kv, ok := strings.CutPrefix(s, "file:"); ok {
			args = append(args, "--set-file", kv)
		} else {
			args = append(args, "--set", s)
		}
	}
	return runHelm(t, args...)
}

var errNoDocs = errors.New("helm template rendered no manifests")
