package helm_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the module root, from this package's directory.
var repoRoot = filepath.Join("..", "..")

// TestDockerfile checks what a container build cannot be run here to show:
// the image builds the static binary with its version stamped, and runs it
// as nonroot from distroless.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	var froms []string
	for line := range strings.SplitSeq(df, "\n") {
		if f, ok := strings.CutPrefix(line, "FROM "); ok {
			froms = append(froms, f)
		}
	}
	if len(froms) < 2 {
		t.Fatalf("got stages %q, want a multi-stage build", froms)
	}
	if !strings.Contains(froms[0], "golang:1.26") {
		t.Errorf("got builder %q, want golang:1.26", froms[0])
	}
	if final := froms[len(froms)-1]; !strings.HasPrefix(final, "gcr.io/distroless/static") || !strings.HasSuffix(final, ":nonroot") {
		t.Errorf("got final stage %q, want distroless static nonroot", final)
	}
	for _, want := range []string{
		"CGO_ENABLED=0", "-trimpath", "-X main.version=${VERSION}", "./cmd/extauthz",
		`org.opencontainers.image.version="${VERSION}"`, "USER 65532:65532", `ENTRYPOINT ["/extauthz"]`,
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}

	// -X main.version needs a package-level string var version in main.
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join(repoRoot, "cmd", "extauthz", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range af.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.VAR {
				continue
			}
			for _, s := range gd.Specs {
				vs := s.(*ast.ValueSpec)
				id, isIdent := vs.Type.(*ast.Ident)
				for _, n := range vs.Names {
					if n.Name == "version" && isIdent && id.Name == "string" {
						found = true
					}
				}
			}
		}
	}
	if !found {
		t.Error("cmd/extauthz has no package-level `var version string` for -X main.version")
	}
}

// TestDockerignore checks that the build context the .dockerignore allow
// list leaves holds every package cmd/extauthz is built from.
func TestDockerignore(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for line := range strings.SplitSeq(string(data), "\n") {
		if p, ok := strings.CutPrefix(strings.TrimSpace(line), "!"); ok {
			allowed[strings.TrimSuffix(p, "/")] = true
		}
	}
	for _, f := range []string{"go.mod", "go.sum"} {
		if !allowed[f] {
			t.Errorf(".dockerignore excludes %s", f)
		}
	}
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/extauthz")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`[^/]+`)
	for dir := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		rel, err := filepath.Rel(root, dir)
		if err != nil {
			t.Fatal(err)
		}
		if top := re.FindString(filepath.ToSlash(rel)); !allowed[top] {
			t.Errorf("cmd/extauthz imports %s, which .dockerignore leaves out of the build context", rel)
		}
	}
}
