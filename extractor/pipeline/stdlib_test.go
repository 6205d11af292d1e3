package pipeline

import (
	"context"
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golora.dev/extractor/config"
)

// goroot returns the Go toolchain's own GOROOT.
func goroot(t *testing.T) string {
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		if r := strings.TrimSpace(string(out)); r != "" {
			return r
		}
	}
	return runtime.GOROOT()
}

// TestStandardLibrary runs the extractor over $(go env GOROOT)/src and
// checks the output against independent implementations of the rules.
func TestStandardLibrary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the standard library run")
	}
	src := filepath.Join(goroot(t), "src")
	if _, err := os.Stat(filepath.Join(src, "go.mod")); err != nil {
		t.Skipf("no standard library source at %s", src)
	}
	c := config.Default()
	c.StoreRoot = t.TempDir()
	c.OutputPath = "datasets/std/stdlib"
	c.Sources = []config.Source{{Name: "stdlib", PVC: &config.PVCSource{ClaimName: "goroot", Path: "src"}, Dir: src}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	res, err := Run(context.Background(), &c, Options{})
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	dir := filepath.Join(c.StoreRoot, c.OutputPath)
	pairs := append(readPairs(t, filepath.Join(dir, "train.jsonl")), readPairs(t, filepath.Join(dir, "eval.jsonl"))...)
	if len(pairs) != res.PairsKept || len(pairs) < 5000 {
		t.Fatalf("%d pairs in the files, %d in the result", len(pairs), res.PairsKept)
	}

	header := map[string]*ast.File{}
	seen := map[string]string{}
	mentions := 0
	for _, p := range pairs {
		path := p.Meta.Path
		parts := strings.Split(path, "/")
		for _, part := range parts[:len(parts)-1] {
			switch part {
			case "testdata", "vendor", "third_party", "Godeps":
				t.Errorf("pair from a skipped directory: %s", path)
			}
		}
		if strings.HasSuffix(path, "_test.go") {
			t.Errorf("pair from a test file: %s", path)
		}
		f, ok := header[path]
		if !ok {
			f, err = parser.ParseFile(token.NewFileSet(), filepath.Join(src, path), nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			header[path] = f
			if ast.IsGenerated(f) {
				t.Errorf("pair from a generated file: %s", path)
			}
			for _, g := range f.Comments {
				for _, cm := range g.List {
					if cm.Pos() < f.Package && constraint.IsGoBuild(cm.Text) && strings.Contains(cm.Text, "ignore") &&
						!strings.Contains(cm.Text, "||") && !strings.Contains(cm.Text, "!ignore") {
						t.Errorf("pair from a //go:build ignore file: %s", path)
					}
				}
			}
		}
		key := scannerNormalized(p.Output)
		if prev, dup := seen[key]; dup {
			t.Errorf("exact duplicate bodies: %s:%d and %s", path, p.Meta.StartLine, prev)
		}
		seen[key] = path
		for _, line := range strings.Split(p.Instruction, "\n") {
			if isDirective(line) {
				t.Errorf("directive line %q in the instruction of %s:%d", line, path, p.Meta.StartLine)
			}
		}
		for _, d := range []string{"//go:", "nolint", "+build"} {
			if strings.Contains(p.Instruction, d) {
				// Docs about directives, such as go/build/constraint.Parse's
				// "Parse parses a single build constraint line of the form
				// “//go:build ...” or “// +build ...”", are prose: kept.
				mentions++
				break
			}
		}
		if p.Instruction == "" || p.Output == "" || !strings.HasPrefix(p.Output, "func") {
			t.Errorf("bad pair at %s:%d", path, p.Meta.StartLine)
		}
		if p.Meta.License != "BSD-3-Clause" {
			t.Errorf("license %q for %s", p.Meta.License, path)
		}
	}
	t.Logf("standard library %s: %d files seen, %d parsed, %d parse errors; %d pairs kept (%d train, %d eval) in %.2fs",
		src, res.FilesSeen, res.FilesParsed, res.ParseErrors, res.PairsKept, res.PairsTrain, res.PairsEval, elapsed.Seconds())
	t.Logf("dropped: %s", formatCounts(res.Dropped))
	t.Logf("files skipped: %s", formatCounts(res.SkippedFiles))
	t.Logf("output chars p50 %d p90 %d max %d; instructions that mention //go:, nolint or +build in prose (kept): %d",
		res.Lengths.P50, res.Lengths.P90, res.Lengths.Max, mentions)
	if res.Dropped["exactDuplicate"] == 0 || res.Dropped["test"] == 0 || res.Dropped["vendor"] == 0 ||
		res.Dropped["generated"] == 0 || res.Dropped["directiveOnly"] == 0 {
		t.Errorf("expected every rule to fire on the standard library: %v", res.Dropped)
	}
}

// scannerNormalized spells src's tokens with go/scanner, comments dropped:
// an implementation of "same body" independent of the dedup package.
func scannerNormalized(src string) string {
	var s scanner.Scanner
	fset := token.NewFileSet()
	s.Init(fset.AddFile("", fset.Base(), len(src)), []byte(src), nil, 0)
	var b strings.Builder
	for {
		_, tok, lit := s.Scan()
		if tok == token.EOF {
			return b.String()
		}
		if tok == token.SEMICOLON {
			lit = ";"
		} else if lit == "" {
			lit = tok.String()
		}
		b.WriteString(lit)
		b.WriteByte(' ')
	}
}

var goDirective = regexp.MustCompile(`^[a-z0-9]+:[a-z0-9]`)

// isDirective reports whether a line of an instruction is a tool directive
// left in place of documentation: Go's own directive syntax (what "//go:x"
// is once "//" is stripped), "//line"-style directives, and the nolint,
// lint:ignore and +build/+marker comments that CommentGroup.Text keeps.
// Indented lines are code examples and are not checked.
func isDirective(line string) bool {
	if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "  ") {
		return false
	}
	l := strings.TrimSpace(line)
	switch {
	case goDirective.MatchString(l):
		return true
	case strings.HasPrefix(l, "line ") && strings.Contains(l, ".go:"):
		return true
	case l == "nolint" || strings.HasPrefix(l, "nolint:") || strings.HasPrefix(l, "nolint "):
		return true
	case strings.HasPrefix(l, "lint:"), strings.HasPrefix(l, "+build"), strings.HasPrefix(l, "+k8s:"),
		strings.HasPrefix(l, "+kubebuilder:"), strings.HasPrefix(l, "+genclient"):
		return true
	}
	return false
}
