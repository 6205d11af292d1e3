package check

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golora.dev/extractor/extract"
)

var (
	checkerOnce sync.Once
	checker     *TypeChecker
	checkerErr  error
)

// stdlib is a type checker on the Go toolchain's own GOROOT.
func stdlib(t *testing.T) *TypeChecker {
	t.Helper()
	checkerOnce.Do(func() {
		root := os.Getenv("GOROOT")
		if root == "" {
			out, err := exec.Command("go", "env", "GOROOT").Output()
			if err != nil {
				checkerErr = err
				return
			}
			root = strings.TrimSpace(string(out))
		}
		checker, checkerErr = NewTypeChecker(root)
	})
	if checkerErr != nil {
		t.Skipf("no GOROOT: %v", checkerErr)
	}
	return checker
}

type original struct {
	code string
	meta Meta
}

// originals are every function of one standard library package directory
// as the extractor would record them, with path and package as given.
func originals(t *testing.T, tc *TypeChecker, dir string, meta func(file string) Meta) []original {
	t.Helper()
	abs := filepath.Join(tc.src(), filepath.FromSlash(dir))
	bp, err := tc.ctx.ImportDir(abs, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []original
	for _, name := range bp.GoFiles {
		src, err := os.ReadFile(filepath.Join(abs, name))
		if err != nil {
			t.Fatal(err)
		}
		fs := token.NewFileSet()
		f, err := parser.ParseFile(fs, name, src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok || fd.Body == nil {
				continue
			}
			m := meta(name)
			m.Name, m.Receiver = fd.Name.Name, extract.ReceiverName(fd)
			lo, hi := fs.Position(fd.Pos()).Offset, fs.Position(fd.End()).Offset
			out = append(out, original{string(src[lo:hi]), m})
		}
	}
	if len(out) < 10 {
		t.Fatalf("%s: only %d functions", dir, len(out))
	}
	return out
}

func TestOriginalStdlibFunctionsTypeCheck(t *testing.T) {
	tc := stdlib(t)
	layouts := map[string][]original{
		// a dataset of GOROOT/src: path under src, import path as package
		"strings": originals(t, tc, "strings", func(f string) Meta {
			return Meta{Repo: "go-src/src", Path: "strings/" + f, Package: "strings"}
		}),
		// a dataset of one package directory: package name only, the directory in repo
		"unicode/utf8": originals(t, tc, "unicode/utf8", func(f string) Meta {
			return Meta{Repo: "goroot/src/unicode/utf8", Path: f, Package: "utf8"}
		}),
		// a dataset of GOROOT itself: path under the root
		"bufio": originals(t, tc, "bufio", func(f string) Meta {
			return Meta{Repo: "goroot", Path: "src/bufio/" + f, Package: "bufio"}
		}),
	}
	for dir, funcs := range layouts {
		for _, o := range funcs {
			if r := tc.Check(o.code, o.meta); r.Outcome != TypeOK {
				t.Errorf("%s %s: %s: %s", dir, funcName(o.meta.Name, o.meta.Receiver), r.Outcome, r.Detail)
			}
		}
	}
}

func TestGeneratedCodeWithTypeErrorsFails(t *testing.T) {
	tc := stdlib(t)
	meta := Meta{Repo: "go-src/src", Path: "strings/strings.go", Package: "strings", Name: "ToUpper"}
	good := "func ToUpper(s string) string {\n\treturn Map(unicode.ToUpper, s)\n}"
	fenced := "```go\nimport \"unicode\"\n\n" + good + "\n```"
	for _, tc2 := range []struct {
		name, code, want, detail string
	}{
		{"same behaviour, shorter", good, TypeOK, ""},
		{"fenced, with an import the file has", fenced, TypeOK, ""},
		{"returns an int", "func ToUpper(s string) string {\n\treturn len(s)\n}", TypeError, "cannot use len(s)"},
		{"undefined name", "func ToUpper(s string) string {\n\treturn upper(s)\n}", TypeError, "undefined: upper"},
		{"unused import", "import \"sort\"\n\n" + good, TypeError, "\"sort\" imported and not used"},
		{"another function", "func ToLower2(s string) string { return s }", TypeError, "no func ToUpper"},
		{"prose", "ToUpper returns s in upper case.", TypeError, "does not parse"},
		{"tabs", "\t\t\t\t\t", TypeError, "no func ToUpper"},
	} {
		r := tc.Check(tc2.code, meta)
		if r.Outcome != tc2.want || !strings.Contains(r.Detail, tc2.detail) {
			t.Errorf("%s: %s %q, want %s with %q", tc2.name, r.Outcome, r.Detail, tc2.want, tc2.detail)
		}
	}
	// a signature the package's callers cannot use (Contains calls Index)
	idx := Meta{Path: "strings/strings.go", Package: "strings", Name: "Index"}
	if r := tc.Check("func Index(s []byte, substr string) int { return 0 }", idx); r.Outcome != TypeError ||
		!strings.Contains(r.Detail, "cannot use s") {
		t.Errorf("another signature: %s %q", r.Outcome, r.Detail)
	}
	// a method, by receiver
	m := Meta{Path: "strings/builder.go", Package: "strings", Name: "Len", Receiver: "Builder"}
	if r := tc.Check("func (b *Builder) Len() int { return len(b.buf) }", m); r.Outcome != TypeOK {
		t.Errorf("method: %s %s", r.Outcome, r.Detail)
	}
	if r := tc.Check("func (b *Builder) Len() int { return b.size }", m); r.Outcome != TypeError ||
		!strings.Contains(r.Detail, "b.size undefined") {
		t.Errorf("method with a missing field: %s %s", r.Outcome, r.Detail)
	}
}

func TestPairsOutsideTheStandardLibraryAreSkipped(t *testing.T) {
	tc := stdlib(t)
	for _, m := range []Meta{
		{},
		{Repo: "github.com/grpc/grpc-go", Path: "server.go", Package: "google.golang.org/grpc", Name: "Serve"},
		{Repo: "go-src/src", Path: "strings/strings.go", Package: "strings", Name: "NoSuchFunction"},
		{Repo: "go-src/src", Path: "os/file_windows.go", Package: "os", Name: "Open"},
	} {
		if r := tc.Check("func f() {}", m); r.Outcome != TypeSkipped || r.Detail == "" {
			t.Errorf("%+v: %s %q, want skipped with a reason", m, r.Outcome, r.Detail)
		}
	}
}

func TestReaderWithTypeChecks(t *testing.T) {
	tc := stdlib(t)
	meta := `"meta": {"repo": "go-src/src", "path": "strings/strings.go", "package": "strings", "name": "ToUpper"}`
	in := `{"code": "func ToUpper(s string) string {\n\treturn Map(unicode.ToUpper, s)\n}", ` + meta + `}
{"code": "func ToUpper(s string) string {\n\treturn 1\n}", ` + meta + `}
{"code": "\t\t\t", ` + meta + `}
{"code": "func f() {}"}
`
	rep, err := ReaderWith(strings.NewReader(in), tc, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 4 || rep.Parsed != 3 || *rep.TypeCheckable != 3 || *rep.TypeCheckPassed != 1 ||
		*rep.TypeCheckRate != 1.0/3 || len(rep.Results) != 4 {
		t.Fatalf("report %+v", rep)
	}
	want := []string{TypeOK, TypeError, TypeError, TypeSkipped}
	for i, r := range rep.Results {
		if r.Outcome != want[i] {
			t.Errorf("line %d: %s, want %s", i+1, r.Outcome, want[i])
		}
	}
	if !rep.Results[0].Parsed || rep.Results[2].Parsed {
		t.Errorf("parsed flags %+v", rep.Results)
	}
	// without a checker: parse results only, and the note says why
	rep, _ = ReaderWith(strings.NewReader(in), nil, "no GOROOT", nil)
	if *rep.TypeCheckable != 0 || rep.TypeCheckRate != nil || rep.Note != "no GOROOT" || rep.Parsed != 3 {
		t.Errorf("no checker: %+v", rep)
	}
}
