package extract

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func defaults() *Options {
	return &Options{MinLines: 5, MinDocWords: 3, MaxOutputBytes: 16384, Template: "doc", CountSkipped: true}
}

// extractTree walks and parses root and returns the pairs by function name,
// the summed drop counts, and the results.
func extractTree(t *testing.T, root string, o *Options) (map[string][]Pair, Counts, []*FileResult, []File) {
	t.Helper()
	files, skipped, err := Walk(Tree{Root: root, Origin: Origin{Source: "fx", Repo: "fixture"}}, o)
	if err != nil {
		t.Fatal(err)
	}
	results := ParseAll(context.Background(), files, o, 0, nil)
	pairs := map[string][]Pair{}
	dropped := skipped
	for _, r := range results {
		dropped.Add(&r.Dropped)
		for _, p := range r.Pairs {
			pairs[p.Meta.Name] = append(pairs[p.Meta.Name], p)
		}
	}
	return pairs, dropped, results, files
}

func fileResult(t *testing.T, files []File, results []*FileResult, rel string) *FileResult {
	t.Helper()
	for i, f := range files {
		if f.Rel == rel {
			return results[i]
		}
	}
	t.Fatalf("no file %s in the walk", rel)
	return nil
}

func TestFixtureRules(t *testing.T) {
	pairs, dropped, results, files := extractTree(t, "testdata/rules", defaults())

	var names []string
	for n := range pairs {
		names = append(names, n)
	}
	slices.Sort(names)
	want := []string{"Add", "Exported", "Join", "Keys", "Put", "Twice", "lookalikeFunc", "maybeIgnored",
		"normalizeLines", "normalizeRows", "pageSize", "withGoDirective", "withNolint"}
	if !slices.Equal(names, want) {
		t.Errorf("pairs for\n %v\nwant\n %v", names, want)
	}
	if n := len(pairs["pageSize"]); n != 2 {
		t.Errorf("pageSize: %d pairs before dedup, want 2 (linux and windows variants)", n)
	}

	wantDropped := map[Reason]int{
		NoDoc: 1, DirectiveOnly: 1, TooShort: 1, DocTooShort: 1, NoBody: 1,
		Test: 1, Testdata: 1, Vendor: 3, Generated: 1, BuildIgnore: 2,
	}
	for r := Reason(1); r < NumReasons; r++ {
		if dropped[r] != wantDropped[r] {
			t.Errorf("dropped[%s] = %d, want %d", r, dropped[r], wantDropped[r])
		}
	}

	skips := map[string]Reason{
		"rules_test.go": Test, "testdata/fixture.go": Testdata, "vendor/example.org/dep/dep.go": Vendor,
		"third_party/lib/lib.go": Vendor, "Godeps/_workspace/ws.go": Vendor, "zz_generated.go": Generated,
		"gen_script.go": BuildIgnore, "old_ignore.go": BuildIgnore, "lookalike.go": None,
		"maybe_ignore.go": None, "cgo.go": None,
	}
	for rel, want := range skips {
		if got := fileResult(t, files, results, rel).Skip; got != want {
			t.Errorf("%s: skip = %q, want %q", rel, got, want)
		}
	}
	if r := fileResult(t, files, results, "broken.go"); r.ParseError == nil {
		t.Errorf("broken.go parsed without error")
	}
}

func TestGenericReceivers(t *testing.T) {
	pairs, _, _, _ := extractTree(t, "testdata/rules", defaults())
	for name, recv := range map[string]string{"Add": "Set", "Put": "Pairs", "Keys": ""} {
		p := pairs[name][0]
		if p.Meta.Receiver != recv {
			t.Errorf("%s: receiver %q, want %q", name, p.Meta.Receiver, recv)
		}
	}
	add := pairs["Add"][0]
	if !strings.HasPrefix(add.Output, "func (s *Set[T]) Add(v T) {") || !strings.HasSuffix(add.Output, "}") {
		t.Errorf("Add output is not the exact function source:\n%s", add.Output)
	}
	if strings.Contains(add.Output, "//") {
		t.Errorf("output holds the doc comment:\n%s", add.Output)
	}
	if add.Instruction != "Add puts v into the set, allocating the map on first use." {
		t.Errorf("instruction %q", add.Instruction)
	}
	if add.Meta.StartLine != 9 || add.Meta.EndLine != 14 {
		t.Errorf("Add lines %d-%d, want 9-14", add.Meta.StartLine, add.Meta.EndLine)
	}
	if add.Meta.Package != "example.com/rules" || add.Meta.Path != "generics.go" || add.Meta.License != "MIT" {
		t.Errorf("Add meta %+v", add.Meta)
	}
	if j := pairs["Join"][0]; j.Meta.Package != "example.com/rules/sub" || j.Meta.Path != "sub/sub.go" {
		t.Errorf("Join meta %+v", j.Meta)
	}
}

func TestDirectivesCleaned(t *testing.T) {
	pairs, _, _, _ := extractTree(t, "testdata/rules", defaults())
	if got := pairs["withNolint"][0].Instruction; got != "withNolint adds the numbers of xs and returns their sum." {
		t.Errorf("withNolint instruction %q", got)
	}
	if got := pairs["withGoDirective"][0].Instruction; got != "withGoDirective doubles every element of xs in place." {
		t.Errorf("withGoDirective instruction %q", got)
	}
	tw := pairs["Twice"][0]
	if tw.Instruction != "Twice doubles x by calling into C, for callers on the C side." {
		t.Errorf("cgo Twice instruction %q", tw.Instruction)
	}
	if !strings.HasPrefix(tw.Output, "func Twice(x C.int) C.int {") {
		t.Errorf("cgo Twice output %q", tw.Output)
	}
}

func TestCleanDoc(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"// Foo does a thing.\n", "Foo does a thing."},
		{"//go:nosplit\n", ""},
		{"//go:nosplit\n//go:noinline\n", ""},
		{"//nolint\n", ""},
		{"// nolint:errcheck // reason\n", ""},
		{"// +build linux\n", ""},
		{"// +k8s:deepcopy-gen=package\n// +genclient\n", ""},
		{"// Foo does.\n//\n// +kubebuilder:object:root=true\n", "Foo does."},
		{"// Foo does.\n//lint:ignore SA1019 old\n// More prose.\n", "Foo does.\nMore prose."},
		{"// Foo does.\n//\n//go:linkname foo runtime.foo\n//\n// Second paragraph.\n", "Foo does.\n\nSecond paragraph."},
		{"// go:generate stringer -type=X\n// Foo does.\n", "Foo does."},
		{"//export Foo\n// Foo does.\n", "Foo does."},
		{"// Max returns +Inf when x is +Inf.\n", "Max returns +Inf when x is +Inf."},
		{"// +Inf is returned.\n", "+Inf is returned."},
		{"// See http://example.com/x for more.\n", "See http://example.com/x for more."},
		{"// nolinting is not a directive.\n", "nolinting is not a directive."},
		{"// Example:\n//\n//\t//go:generate stringer\n", "Example:\n\n\t//go:generate stringer"},
		{"/* Block doc. */", "Block doc."},
	} {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, "", "package p\n"+strings.TrimSuffix(tc.in, "\n")+"\nfunc f() {}\n", parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		got := CleanDoc(f.Decls[0].(*ast.FuncDecl).Doc)
		if got != tc.want {
			t.Errorf("CleanDoc(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestFilters(t *testing.T) {
	dir := t.TempDir()
	huge := "package p\n\n// Huge is a documented function far larger than the output limit.\nfunc Huge() int {\n\tx := 0\n" +
		strings.Repeat("\tx += 1 // padding to make the function long\n", 500) + "\treturn x\n}\n\n" +
		"// small is a documented unexported function of five lines.\nfunc small() int {\n\tx := 1\n\tx++\n\treturn x\n}\n\n" +
		"// Big is an exported method on an unexported type.\nfunc (b *big) Big() int {\n\tx := 1\n\tx++\n\treturn x\n}\n\ntype big struct{}\n"
	if err := os.WriteFile(filepath.Join(dir, "huge.go"), []byte(huge), 0o644); err != nil {
		t.Fatal(err)
	}
	o := defaults()
	pairs, dropped, _, _ := extractTree(t, dir, o)
	if len(pairs["Huge"]) != 0 || dropped[TooLong] != 1 {
		t.Errorf("huge function: pairs %d, tooLong %d; want dropped as tooLong", len(pairs["Huge"]), dropped[TooLong])
	}
	if len(pairs["small"]) != 1 || len(pairs["Big"]) != 1 {
		t.Errorf("small/Big should be kept without exportedOnly: %v", pairs)
	}

	o = defaults()
	o.ExportedOnly = true
	o.MaxOutputBytes = 0 // no limit
	pairs, dropped, _, _ = extractTree(t, dir, o)
	if len(pairs["Huge"]) != 1 || len(pairs["small"]) != 0 || len(pairs["Big"]) != 0 || dropped[Unexported] != 2 {
		t.Errorf("exportedOnly: pairs %v, unexported %d", pairs, dropped[Unexported])
	}

	o = defaults()
	o.MinLines = 8
	_, dropped, _, _ = extractTree(t, dir, o)
	if dropped[TooShort] != 2 {
		t.Errorf("minLines 8: tooShort %d, want 2", dropped[TooShort])
	}
}

func TestIncludeFlags(t *testing.T) {
	o := defaults()
	o.IncludeTests, o.IncludeTestdata, o.IncludeVendor = true, true, true
	o.IncludeGenerated, o.IncludeBuildIgnored = true, true
	pairs, dropped, _, _ := extractTree(t, "testdata/rules", o)
	for _, name := range []string{"TestNothing", "inTestdata", "Vendored", "ThirdParty", "Workspace",
		"generatedFunc", "main", "oldStyleIgnored"} {
		if len(pairs[name]) != 1 {
			t.Errorf("with every include flag, %s gives %d pairs, want 1", name, len(pairs[name]))
		}
	}
	for _, r := range []Reason{Test, Testdata, Vendor, Generated, BuildIgnore} {
		if dropped[r] != 0 {
			t.Errorf("dropped[%s] = %d with include flags", r, dropped[r])
		}
	}
}

func TestSymlinksNotFollowed(t *testing.T) {
	outside := t.TempDir()
	src := "package x\n\n// Outside lives outside the tree and must not be read.\nfunc Outside() int {\n\ta := 1\n\ta++\n\ta++\n\treturn a\n}\n"
	if err := os.WriteFile(filepath.Join(outside, "x.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "in.go"), []byte(strings.ReplaceAll(src, "Outside", "Inside")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "vendor", "k8s.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	// kubernetes' layout: vendor/k8s.io/api -> ../../staging/src/k8s.io/api
	for _, link := range [][2]string{
		{outside, filepath.Join(root, "linked")},
		{outside, filepath.Join(root, "vendor", "k8s.io", "api")},
		{filepath.Join(outside, "x.go"), filepath.Join(root, "file_link.go")},
	} {
		if err := os.Symlink(link[0], link[1]); err != nil {
			t.Skipf("symlinks unsupported: %v", err)
		}
	}
	o := defaults()
	o.IncludeVendor = true
	files, skipped, err := Walk(Tree{Root: root}, o)
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, f := range files {
		rels = append(rels, f.Rel)
	}
	if !slices.Equal(rels, []string{"in.go"}) {
		t.Errorf("walked %v, want only in.go", rels)
	}
	if skipped[Symlink] != 3 {
		t.Errorf("skipped symlinks = %d, want 3", skipped[Symlink])
	}
}

func TestWalkOrderStable(t *testing.T) {
	files, _, err := Walk(Tree{Root: "testdata/rules"}, defaults())
	if err != nil {
		t.Fatal(err)
	}
	var rels []string
	for _, f := range files {
		rels = append(rels, f.Rel)
	}
	// filepath.WalkDir's lexical order.
	var want []string
	filepath.WalkDir("testdata/rules", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			rel, _ := filepath.Rel("testdata/rules", p)
			want = append(want, filepath.ToSlash(rel))
		}
		return nil
	})
	if !slices.Equal(rels, want) {
		t.Errorf("walk order\n %v\nwant\n %v", rels, want)
	}
	// The same results whatever the parallelism.
	o := defaults()
	one := ParseAll(context.Background(), files, o, 1, nil)
	many := ParseAll(context.Background(), files, o, 8, nil)
	for i := range one {
		if len(one[i].Pairs) != len(many[i].Pairs) || one[i].Dropped != many[i].Dropped {
			t.Errorf("%s: results differ between 1 and 8 workers", files[i].Rel)
		}
	}
}

func TestContextTemplate(t *testing.T) {
	o := defaults()
	o.Template = "context"
	pairs, _, _, _ := extractTree(t, "testdata/rules", o)
	got := pairs["Add"][0].Instruction
	want := "In Go package `example.com/rules`, write the method `Add` on `*Set[T]` with the signature " +
		"`func (s *Set[T]) Add(v T)`.\n\nAdd puts v into the set, allocating the map on first use."
	if got != want {
		t.Errorf("context instruction\n%q\nwant\n%q", got, want)
	}
	got = pairs["Keys"][0].Instruction
	if !strings.HasPrefix(got, "In Go package `example.com/rules`, write the function `Keys` with the signature "+
		"`func Keys[M ~map[K]V, K comparable, V any](m M) []K`.") {
		t.Errorf("context instruction for a function: %q", got)
	}
}

func TestBuildIgnored(t *testing.T) {
	for _, tc := range []struct {
		header string
		want   bool
	}{
		{"//go:build ignore\n", true},
		{"//go:build ignore && linux\n", true},
		{"//go:build ignore || linux\n", false},
		{"//go:build !ignore\n", false},
		{"//go:build linux\n", false},
		{"// +build ignore\n", true},
		{"// +build linux ignore\n", false}, // linux OR ignore
		{"// +build linux\n// +build ignore\n", true},
		{"", false},
	} {
		f, err := parser.ParseFile(token.NewFileSet(), "", tc.header+"\npackage p\n", parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		if got := buildIgnored(f); got != tc.want {
			t.Errorf("buildIgnored(%q) = %v, want %v", tc.header, got, tc.want)
		}
	}
}

// TestCountPairsAgrees holds the token-based counter used for skipped files
// to the parser-based extractor on every fixture that parses.
func TestCountPairsAgrees(t *testing.T) {
	o := defaults()
	o.IncludeTests, o.IncludeTestdata, o.IncludeVendor, o.IncludeGenerated, o.IncludeBuildIgnored = true, true, true, true, true
	files, _, err := Walk(Tree{Root: "testdata/rules"}, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []*Options{o, {MinLines: 1, MinDocWords: 0}, {MinLines: 6, MinDocWords: 5, ExportedOnly: true, MaxOutputBytes: 100}} {
		for i := range files {
			checkCount(t, &files[i], tc)
		}
	}
}

func checkCount(t *testing.T, f *File, o *Options) bool {
	t.Helper()
	src, err := os.ReadFile(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, f.Path, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		return true // CountPairs makes no promise for files that do not parse
	}
	var d Counts
	want := len(funcs(fset.File(file.Package), src, file, f, o, &d))
	if got := CountPairs(src, o); got != want {
		t.Errorf("%s: CountPairs = %d, parser-based = %d (options %+v)", f.Rel, got, want, *o)
		return false
	}
	return true
}

func TestLineDirectivesDoNotMoveLines(t *testing.T) {
	dir := t.TempDir()
	src := "package p\n\n//line grammar.y:100\n\n// Reduce applies one grammar rule to the stack.\nfunc Reduce(s []int) []int {\n\ts = s[:len(s)-1]\n\ts = append(s, 1)\n\treturn s\n}\n"
	os.WriteFile(filepath.Join(dir, "y.go"), []byte(src), 0o644)
	pairs, _, _, _ := extractTree(t, dir, defaults())
	if m := pairs["Reduce"][0].Meta; m.StartLine != 6 || m.EndLine != 10 {
		t.Errorf("lines %d-%d, want 6-10 (the file's own lines)", m.StartLine, m.EndLine)
	}
}
