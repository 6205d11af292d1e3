// Command naive is the baseline extractor golora-extract is measured
// against: the blog's rule done the simplest way. One goroutine walks the
// tree, parses every .go file with go/parser, visits the AST with
// ast.Inspect, and writes a pair for every FuncDecl that has a doc comment
// and spans at least 5 lines. No file is skipped, no doc is cleaned, nothing
// is deduplicated.
//
// Usage: naive ROOT OUT.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

type pair struct {
	Instruction string `json:"instruction"`
	Output      string `json:"output"`
	Path        string `json:"path"` // kept so the bench can classify pairs
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: naive ROOT OUT.jsonl")
		os.Exit(2)
	}
	root, out := os.Args[1], os.Args[2]
	f, err := os.Create(out)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	files, pairs, failed := 0, 0, 0
	filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || !d.Type().IsRegular() {
			return nil
		}
		files++
		src, err := os.ReadFile(path)
		if err != nil {
			failed++
			return nil
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, path, src, parser.ParseComments)
		if err != nil {
			failed++
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		ast.Inspect(file, func(n ast.Node) bool {
			fd, ok := n.(*ast.FuncDecl)
			if !ok || fd.Doc == nil || fd.Body == nil {
				return true
			}
			start, end := fset.Position(fd.Pos()), fset.Position(fd.End())
			if end.Line-start.Line+1 < 5 {
				return true
			}
			enc.Encode(pair{Instruction: fd.Doc.Text(), Output: string(src[start.Offset:end.Offset]), Path: filepath.ToSlash(rel)})
			pairs++
			return true
		})
		return nil
	})
	if err := w.Flush(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	f.Close()
	fmt.Fprintf(os.Stderr, "naive: %d files, %d failed to parse, %d pairs\n", files, failed, pairs)
}
