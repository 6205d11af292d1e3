package extract

import (
	"context"
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/token"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
)

// Options are the filters and the instruction template.
type Options struct {
	MinLines       int  // functions shorter than this (func keyword to closing brace) are TooShort
	MinDocWords    int  // cleaned docs with fewer words are DocTooShort
	MaxOutputBytes int  // larger function sources are TooLong; 0 means no limit
	ExportedOnly   bool // drop unexported functions and methods of unexported types

	IncludeTests        bool
	IncludeTestdata     bool
	IncludeVendor       bool
	IncludeGenerated    bool
	IncludeBuildIgnored bool

	Template string // "doc" or "context"

	// CountSkipped reads the files a rule excludes too and counts (with
	// CountPairs) the pairs each would have given, so that dropped counts say
	// how many pairs each file rule removed, not only how many files.
	CountSkipped bool
}

// Origin is where a tree came from; every pair records it.
type Origin struct {
	Source   string // source name in the config
	Repo     string // git URL, module path or pvc claim/path
	Revision string // commit or module version
}

// Pair is one training example.
type Pair struct {
	Instruction string `json:"instruction"`
	Output      string `json:"output"`
	Meta        Meta   `json:"meta"`
}

// Meta is the provenance of a pair.
type Meta struct {
	Source    string `json:"source"`
	Repo      string `json:"repo"`
	Revision  string `json:"revision"`
	Path      string `json:"path"`
	StartLine int    `json:"startLine"`
	EndLine   int    `json:"endLine"`
	Package   string `json:"package"`
	Name      string `json:"name"`
	Receiver  string `json:"receiver"`
	License   string `json:"license"`
}

// FileResult is what one file yields.
type FileResult struct {
	Pairs      []Pair
	Dropped    Counts // functions dropped, by reason; for a skipped file, the pairs it would have given
	Skip       Reason // the rule that excluded the whole file, or None
	ParseError error  // set when the file could not be read or parsed
}

// ParseAll parses files on workers goroutines (GOMAXPROCS when workers <= 0)
// and returns their results in the order of files, so the output does not
// depend on scheduling. each, when not nil, is called on the worker that
// produced result i, for per-file work that should run in parallel too.
func ParseAll(ctx context.Context, files []File, o *Options, workers int,
	each func(i int, r *FileResult)) []*FileResult {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	results := make([]*FileResult, len(files))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(files) || ctx.Err() != nil {
					return
				}
				r := ParseFile(&files[i], o)
				results[i] = r
				if each != nil {
					each(i, r)
				}
			}
		}()
	}
	wg.Wait()
	return results
}

// ParseFile reads and parses one file and returns its pairs.
func ParseFile(f *File, o *Options) *FileResult {
	r := &FileResult{Skip: f.Skip}
	if r.Skip != None && !o.CountSkipped {
		return r
	}
	src, err := os.ReadFile(f.Path)
	if err != nil {
		if r.Skip == None {
			r.ParseError = err
		}
		return r
	}
	fset := token.NewFileSet()
	if r.Skip == None {
		// The package clause and the comments above it decide whether the
		// file is generated or build-ignored; parse only that much first.
		hdr, _ := parser.ParseFile(fset, f.Path, src, parser.PackageClauseOnly|parser.ParseComments)
		if hdr != nil {
			switch {
			case !o.IncludeGenerated && ast.IsGenerated(hdr):
				r.Skip = Generated
			case !o.IncludeBuildIgnored && buildIgnored(hdr):
				r.Skip = BuildIgnore
			}
		}
	}
	if r.Skip != None {
		if o.CountSkipped {
			r.Dropped[r.Skip] = CountPairs(src, o)
		}
		return r
	}
	file, err := parser.ParseFile(fset, f.Path, src, parser.ParseComments|parser.SkipObjectResolution)
	if err != nil {
		r.ParseError = err
		return r
	}
	r.Pairs = funcs(fset.File(file.Package), src, file, f, o, &r.Dropped)
	return r
}

// buildIgnored reports whether the file's build constraint cannot be met
// without the "ignore" tag: //go:build ignore and the like mark generator
// programs and scripts, not library code. Other tags are free to be set.
func buildIgnored(f *ast.File) bool {
	var goBuild constraint.Expr
	var plus []constraint.Expr
	for _, g := range f.Comments {
		if g.Pos() > f.Package {
			break
		}
		for _, c := range g.List {
			switch {
			case constraint.IsGoBuild(c.Text):
				if x, err := constraint.Parse(c.Text); err == nil {
					goBuild = x
				}
			case constraint.IsPlusBuild(c.Text):
				if x, err := constraint.Parse(c.Text); err == nil {
					plus = append(plus, x)
				}
			}
		}
	}
	x := goBuild
	if x == nil {
		// Several plus-build lines combine with AND.
		for _, p := range plus {
			if x == nil {
				x = p
			} else {
				x = &constraint.AndExpr{X: x, Y: p}
			}
		}
	}
	if x == nil {
		return false
	}
	return !satisfiable(x)
}

// satisfiable reports whether some assignment of tags, with "ignore" false,
// makes x true. Constraints hold few tags, so trying them all is cheap; with
// too many to try, the file is assumed buildable.
func satisfiable(x constraint.Expr) bool {
	var tags []string
	seen := map[string]bool{}
	x.Eval(func(tag string) bool {
		if !seen[tag] && tag != "ignore" {
			seen[tag] = true
			tags = append(tags, tag)
		}
		return false
	})
	if len(tags) > 16 {
		return true
	}
	for mask := 0; mask < 1<<len(tags); mask++ {
		ok := x.Eval(func(tag string) bool {
			for i, t := range tags {
				if t == tag {
					return mask&(1<<i) != 0
				}
			}
			return false
		})
		if ok {
			return true
		}
	}
	return false
}

// funcs turns the documented functions of file into pairs, counting the
// ones it drops in dropped.
func funcs(tf *token.File, src []byte, file *ast.File, f *File, o *Options, dropped *Counts) []Pair {
	var origin Origin
	if f.Origin != nil {
		origin = *f.Origin
	}
	var pairs []Pair
	pkg := f.ImportDir
	if pkg == "" {
		pkg = file.Name.Name
	}
	for _, d := range file.Decls {
		fd, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		if fd.Body == nil {
			dropped[NoBody]++
			continue
		}
		if fd.Doc == nil {
			dropped[NoDoc]++
			continue
		}
		doc := CleanDoc(fd.Doc)
		if doc == "" {
			dropped[DirectiveOnly]++
			continue
		}
		// Lines as they are in the file: //line directives (goyacc output)
		// must not move them.
		start, end := tf.PositionFor(fd.Pos(), false).Line, tf.PositionFor(fd.End(), false).Line
		if end-start+1 < o.MinLines {
			dropped[TooShort]++
			continue
		}
		if len(strings.Fields(doc)) < o.MinDocWords {
			dropped[DocTooShort]++
			continue
		}
		recvExpr, recvName := receiver(fd)
		if o.ExportedOnly && (!fd.Name.IsExported() || (recvName != "" && !ast.IsExported(recvName))) {
			dropped[Unexported]++
			continue
		}
		lo, hi := tf.Offset(fd.Pos()), tf.Offset(fd.End())
		if o.MaxOutputBytes > 0 && hi-lo > o.MaxOutputBytes {
			dropped[TooLong]++
			continue
		}
		p := Pair{
			Output: string(src[lo:hi]),
			Meta: Meta{
				Source: origin.Source, Repo: origin.Repo, Revision: origin.Revision,
				Path: f.Rel, StartLine: start, EndLine: end, Package: pkg,
				Name: fd.Name.Name, Receiver: recvName, License: f.License,
			},
		}
		if o.Template == "context" {
			recvSrc := ""
			if recvExpr != nil {
				recvSrc = string(src[tf.Offset(recvExpr.Pos()):tf.Offset(recvExpr.End())])
			}
			sig := string(src[lo:tf.Offset(fd.Body.Lbrace)])
			p.Instruction = ContextInstruction(pkg, fd.Name.Name, recvSrc, sig, doc)
		} else {
			p.Instruction = doc
		}
		pairs = append(pairs, p)
	}
	return pairs
}

// receiver returns a method's receiver type expression and the name of its
// base type, unwrapping pointers and type parameters: *Set[K, V] gives Set.
func receiver(fd *ast.FuncDecl) (ast.Expr, string) {
	if fd.Recv == nil || len(fd.Recv.List) == 0 {
		return nil, ""
	}
	typ := fd.Recv.List[0].Type
	x := typ
	for {
		switch t := x.(type) {
		case *ast.StarExpr:
			x = t.X
		case *ast.ParenExpr:
			x = t.X
		case *ast.IndexExpr:
			x = t.X
		case *ast.IndexListExpr:
			x = t.X
		case *ast.Ident:
			return typ, t.Name
		default:
			return typ, ""
		}
	}
}

// ReceiverName is the name of a method's receiver base type (T for *T, T[K] and
// *T[K, V]); "" for a function.
func ReceiverName(fd *ast.FuncDecl) string {
	_, name := receiver(fd)
	return name
}

// ContextInstruction is the "context" template: the doc comment preceded by
// the package import path, the receiver and the signature, so the model is
// told where the function lives and what it must look like.
func ContextInstruction(pkg, name, recv, sig, doc string) string {
	sig = oneLineSig(sig)
	var b strings.Builder
	b.WriteString("In Go package `" + pkg + "`, write ")
	if recv != "" {
		b.WriteString("the method `" + name + "` on `" + recv + "`")
	} else {
		b.WriteString("the function `" + name + "`")
	}
	b.WriteString(" with the signature `" + sig + "`.\n\n")
	b.WriteString(doc)
	return b.String()
}

// oneLineSig joins a multi-line signature into one line.
func oneLineSig(sig string) string {
	s := strings.Join(strings.Fields(sig), " ")
	s = strings.ReplaceAll(s, "( ", "(")
	s = strings.ReplaceAll(s, ", )", ")")
	s = strings.ReplaceAll(s, ",)", ")")
	return s
}
