package check

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/build"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golora.dev/extractor/extract"
)

// Meta is the part of a pair's provenance (the extractor's "meta" object)
// the type check needs: where the original function lives and its name.
type Meta struct {
	Repo     string `json:"repo"`
	Path     string `json:"path"`
	Package  string `json:"package"`
	Name     string `json:"name"`
	Receiver string `json:"receiver"`
}

// Outcomes of a type check.
const (
	TypeOK      = "ok"      // the package type-checks with the generated code in place
	TypeError   = "error"   // it does not (or the code does not parse, or lacks the function)
	TypeSkipped = "skipped" // the pair cannot be type-checked (not a standard library function)
)

// TypeResult is the outcome for one snippet.
type TypeResult struct {
	Outcome string `json:"typeCheck"`
	Detail  string `json:"detail,omitempty"`
}

// TypeChecker checks generated functions inside their own standard library
// package: the function the pair was extracted from is replaced by the
// generated declarations (their imports are added to the file when it lacks
// them) and the package is type-checked with go/types against the standard
// library's own sources in GOROOT. Only pairs whose function is found in
// GOROOT/src can be checked; any other pair is skipped (parse check only).
//
// Files are chosen for the checker's GOOS/GOARCH with cgo off, so a pair
// from a file for another platform is skipped, and so is one whose package
// does not type-check as it is (a GOROOT newer than this checker).
// Dependencies are checked once, without function bodies, and cached.
type TypeChecker struct {
	goroot  string
	ctx     build.Context
	fset    *token.FileSet
	sizes   types.Sizes
	deps    map[string]*types.Package
	loading map[string]bool
	targets map[string]*target
}

// target is a package generated code is checked in.
type target struct {
	path  string
	files []*ast.File
	names []string // base names, parallel to files
	src   map[string][]byte
	err   error // why the package cannot be used: it does not build or type-check as it is
}

// NewTypeChecker returns a checker for the standard library under goroot.
func NewTypeChecker(goroot string) (*TypeChecker, error) {
	abs, err := filepath.Abs(goroot)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(filepath.Join(abs, "src", "builtin")); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a GOROOT: no src/builtin", goroot)
	}
	ctx := build.Default
	ctx.GOROOT = abs
	ctx.GOPATH = ""
	ctx.CgoEnabled = false
	ctx.Dir = ""
	return &TypeChecker{
		goroot:  abs,
		ctx:     ctx,
		fset:    token.NewFileSet(),
		sizes:   types.SizesFor("gc", ctx.GOARCH),
		deps:    map[string]*types.Package{},
		loading: map[string]bool{},
		targets: map[string]*target{},
	}, nil
}

func (c *TypeChecker) src() string { return filepath.Join(c.goroot, "src") }

// Import implements types.Importer.
func (c *TypeChecker) Import(path string) (*types.Package, error) {
	return c.ImportFrom(path, c.src(), 0)
}

// ImportFrom implements types.ImporterFrom: a package of GOROOT/src (vendor
// directories included), type-checked without function bodies.
func (c *TypeChecker) ImportFrom(ipath, fromDir string, _ types.ImportMode) (*types.Package, error) {
	if ipath == "unsafe" {
		return types.Unsafe, nil
	}
	dir, resolved, err := c.resolve(ipath, fromDir)
	if err != nil {
		return nil, err
	}
	if p, ok := c.deps[resolved]; ok {
		return p, nil
	}
	if c.loading[resolved] {
		return nil, fmt.Errorf("import cycle through %s", resolved)
	}
	c.loading[resolved] = true
	defer delete(c.loading, resolved)
	files, _, _, err := c.parseDir(dir)
	if err != nil {
		return nil, err
	}
	conf := types.Config{Importer: c, IgnoreFuncBodies: true, Sizes: c.sizes, Error: func(error) {}}
	pkg, _ := conf.Check(resolved, c.fset, files, nil) // a dependency with errors still has its API
	if pkg == nil {
		return nil, fmt.Errorf("cannot type-check %s", resolved)
	}
	c.deps[resolved] = pkg
	return pkg, nil
}

// resolve finds the directory of an import path seen from fromDir: the
// nearest vendor directory holding it, else GOROOT/src/<path>.
func (c *TypeChecker) resolve(ipath, fromDir string) (dir, resolved string, err error) {
	src := c.src()
	for d := fromDir; strings.HasPrefix(d, src); d = filepath.Dir(d) {
		cand := filepath.Join(d, "vendor", filepath.FromSlash(ipath))
		if isDir(cand) {
			rel, _ := filepath.Rel(src, cand)
			return cand, filepath.ToSlash(rel), nil
		}
		if d == src {
			break
		}
	}
	cand := filepath.Join(src, filepath.FromSlash(ipath))
	if !isDir(cand) {
		return "", "", fmt.Errorf("package %s is not in %s", ipath, src)
	}
	return cand, ipath, nil
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// parseDir parses the files of the package in dir that build here.
func (c *TypeChecker) parseDir(dir string) ([]*ast.File, []string, map[string][]byte, error) {
	bp, err := c.ctx.ImportDir(dir, 0)
	if err != nil {
		return nil, nil, nil, err
	}
	var files []*ast.File
	srcs := map[string][]byte{}
	for _, name := range bp.GoFiles {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, nil, nil, err
		}
		f, err := parser.ParseFile(c.fset, filepath.Join(dir, name), b, parser.SkipObjectResolution)
		if err != nil {
			return nil, nil, nil, err
		}
		files = append(files, f)
		srcs[name] = b
	}
	return files, bp.GoFiles, srcs, nil
}

// load parses and type-checks the package at import path ipath as it is.
func (c *TypeChecker) load(ipath string) *target {
	if t, ok := c.targets[ipath]; ok {
		return t
	}
	t := &target{path: ipath}
	c.targets[ipath] = t
	files, names, srcs, err := c.parseDir(filepath.Join(c.src(), filepath.FromSlash(ipath)))
	if err != nil {
		t.err = err
		return t
	}
	t.files, t.names, t.src = files, names, srcs
	if err := c.check(ipath, files); err != nil {
		t.err = fmt.Errorf("package %s does not type-check as it is: %v", ipath, err)
	}
	return t
}

// check type-checks one package with bodies; the first error, if any.
func (c *TypeChecker) check(ipath string, files []*ast.File) error {
	var first error
	conf := types.Config{Importer: c, Sizes: c.sizes, Error: func(err error) {
		if first == nil {
			first = err
		}
	}}
	if _, err := conf.Check(ipath, c.fset, files, nil); first == nil {
		first = err
	}
	return first
}

// candidates are the (import path, file name) pairs a pair's function may
// be in: the extractor records the path relative to its source tree and the
// import path when it knows it (a tree at GOROOT or GOROOT/src), else the
// package name (a tree at one package directory, named by the repo field).
func candidates(m Meta) [][2]string {
	p := path.Clean(filepath.ToSlash(m.Path))
	dir, base := path.Split(p)
	dir = strings.TrimSuffix(dir, "/")
	var out [][2]string
	add := func(ipath string) {
		ipath = strings.Trim(ipath, "/")
		if ipath == "" || ipath == "." || strings.HasPrefix(ipath, "..") {
			return
		}
		c := [2]string{ipath, base}
		if !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	if m.Package != "" && (dir == m.Package || strings.HasSuffix(dir, "/"+m.Package) || dir == "") {
		add(m.Package)
	}
	add(dir)
	add(strings.TrimPrefix(dir, "src/"))
	// a tree rooted at GOROOT/src/<dir>: repo "claim/src/<dir>"
	parts := strings.Split(filepath.ToSlash(m.Repo), "/")
	for k, part := range parts {
		if part == "src" {
			add(path.Join(path.Join(parts[k+1:]...), dir))
		}
	}
	return out
}

// locate finds the package and file holding the pair's original function.
func (c *TypeChecker) locate(m Meta) (*target, int, *ast.FuncDecl, string) {
	if m.Name == "" || m.Path == "" {
		return nil, 0, nil, "the pair has no function name or path"
	}
	why := "not a standard library function"
	for _, cand := range candidates(m) {
		ipath, base := cand[0], cand[1]
		if _, err := os.Stat(filepath.Join(c.src(), filepath.FromSlash(ipath), base)); err != nil {
			continue
		}
		t := c.load(ipath)
		i := slices.Index(t.names, base)
		switch {
		case t.err != nil:
			why = t.err.Error()
			continue
		case i < 0:
			why = fmt.Sprintf("%s/%s is not built for %s/%s without cgo", ipath, base, c.ctx.GOOS, c.ctx.GOARCH)
			continue
		}
		if fd := findFunc(t.files[i].Decls, m.Name, m.Receiver); fd != nil {
			return t, i, fd, ""
		}
		why = fmt.Sprintf("%s not found in %s/%s (another Go version?)", funcName(m.Name, m.Receiver), ipath, base)
	}
	return nil, 0, nil, why
}

// Check type-checks code in place of the pair's function.
func (c *TypeChecker) Check(code string, m Meta) TypeResult {
	t, i, orig, why := c.locate(m)
	if t == nil {
		return TypeResult{Outcome: TypeSkipped, Detail: why}
	}
	fail := func(format string, a ...any) TypeResult {
		return TypeResult{Outcome: TypeError, Detail: fmt.Sprintf(format, a...)}
	}
	code = Unfence(code)
	snip, offset, err := parseSnippet(code)
	if err != nil {
		return fail("does not parse: %v", err)
	}
	if findFunc(snip.Decls, m.Name, m.Receiver) == nil {
		return fail("no func %s in the generated code", funcName(m.Name, m.Receiver))
	}
	src := t.src[t.names[i]]
	file := t.files[i]
	tf := c.fset.File(file.Pos())

	// The generated declarations (imports aside), as written.
	var body []byte
	var imports []*ast.ImportSpec
	for _, d := range snip.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.IMPORT {
			for _, s := range g.Specs {
				imports = append(imports, s.(*ast.ImportSpec))
			}
			continue
		}
		lo, hi := int(d.Pos())-1-offset, int(d.End())-1-offset
		body = append(append(body, code[lo:hi]...), "\n\n"...)
	}
	var extra bytes.Buffer
	for _, s := range imports {
		if !hasImport(file, s) {
			extra.WriteString("import ")
			if s.Name != nil {
				extra.WriteString(s.Name.Name + " ")
			}
			extra.WriteString(s.Path.Value + "\n")
		}
	}
	after := tf.Offset(file.Name.End()) // end of the package clause
	lo, hi := tf.Offset(orig.Pos()), tf.Offset(orig.End())
	var out bytes.Buffer
	out.Write(src[:after])
	out.WriteString("\n")
	out.Write(extra.Bytes())
	out.Write(src[after:lo])
	out.Write(bytes.TrimRight(body, "\n"))
	out.Write(src[hi:])

	f, err := parser.ParseFile(c.fset, tf.Name(), out.Bytes(), parser.SkipObjectResolution)
	if err != nil {
		return fail("does not parse in %s: %v", t.names[i], err)
	}
	files := slices.Clone(t.files)
	files[i] = f
	if err := c.check(t.path, files); err != nil {
		return fail("%v", err)
	}
	return TypeResult{Outcome: TypeOK}
}

// parseSnippet parses generated code as declarations (a package clause is
// added when it has none); offset is the length of what was added.
func parseSnippet(code string) (*ast.File, int, error) {
	fs := token.NewFileSet()
	const pre = "package p\n"
	f, err := parser.ParseFile(fs, "", pre+code, parser.SkipObjectResolution)
	if err == nil {
		return f, len(pre), nil
	}
	if g, gerr := parser.ParseFile(fs, "", code, parser.SkipObjectResolution); gerr == nil {
		return g, 0, nil
	}
	return nil, 0, err
}

func hasImport(f *ast.File, s *ast.ImportSpec) bool {
	want, _ := strconv.Unquote(s.Path.Value)
	for _, have := range f.Imports {
		p, _ := strconv.Unquote(have.Path.Value)
		if p == want && identName(have.Name) == identName(s.Name) {
			return true
		}
	}
	return false
}

func identName(id *ast.Ident) string {
	if id == nil {
		return ""
	}
	return id.Name
}

// findFunc is the function or method name (on receiver type recv, "" for a
// function) among decls.
func findFunc(decls []ast.Decl, name, recv string) *ast.FuncDecl {
	for _, d := range decls {
		if fd, ok := d.(*ast.FuncDecl); ok && fd.Name.Name == name && extract.ReceiverName(fd) == strings.TrimLeft(recv, "*") {
			return fd
		}
	}
	return nil
}

func funcName(name, recv string) string {
	if recv == "" {
		return name
	}
	return "(" + recv + ")." + name
}
