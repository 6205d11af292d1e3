// Command extract benchmarks golora-extract against the naive baseline in
// ./naive (the blog's rule: one goroutine, go/ast, any documented function
// of at least 5 lines, no filters) on the same trees in the same run.
//
// Trees: $(go env GOROOT)/src, and from $(go env GOMODCACHE) the newest
// k8s.io/kubernetes@* and go.etcd.io/etcd/server/v3@* when present. Both
// tools are built first; each is then run -runs times per tree, alternating,
// and the fastest wall time is kept. Both outputs are judged by the same
// independent checks: exact duplicate bodies (go/scanner tokens, comments
// dropped) and pairs from categories golora skips (_test.go, testdata/,
// vendor/, third_party/, Godeps/, generated files, //go:build ignore files,
// directive-only docs).
//
// Usage (from this directory): go run . [-runs N] [-trees stdlib,kubernetes,etcd]
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/build/constraint"
	"go/parser"
	"go/scanner"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

type tree struct {
	name, dir string
}

type measure struct {
	wall    time.Duration
	files   int
	pairs   int
	dups    int
	skipped map[string]int // pairs from skipped categories, by category
}

func (m measure) skippedTotal() int {
	n := 0
	for _, v := range m.skipped {
		n += v
	}
	return n
}

func main() {
	runs := flag.Int("runs", 3, "runs per tool and tree (the fastest is kept)")
	only := flag.String("trees", "stdlib,kubernetes,etcd", "trees to measure")
	flag.Parse()

	repo, err := repoRoot()
	check(err)
	tmp, err := os.MkdirTemp("", "golora-bench-")
	check(err)
	defer os.RemoveAll(tmp)

	naiveBin := filepath.Join(tmp, "naive")
	goloraBin := filepath.Join(tmp, "golora-extract")
	run("go", "build", "-trimpath", "-o", naiveBin, "./naive")
	run("go", "-C", filepath.Join(repo, "extractor"), "build", "-trimpath", "-o", goloraBin, "./cmd/golora-extract")

	var trees []tree
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		want[strings.TrimSpace(n)] = true
	}
	if want["stdlib"] {
		trees = append(trees, tree{"stdlib", filepath.Join(goEnv("GOROOT"), "src")})
	}
	modcache := goEnv("GOMODCACHE")
	for _, m := range []struct{ name, pattern string }{
		{"kubernetes", "k8s.io/kubernetes@*"},
		{"etcd", "go.etcd.io/etcd/server/v3@*"},
	} {
		if !want[m.name] {
			continue
		}
		if dir := newest(filepath.Join(modcache, m.pattern)); dir != "" {
			trees = append(trees, tree{m.name + "@" + strings.SplitN(filepath.Base(dir), "@", 2)[1], dir})
		} else {
			fmt.Printf("(%s not in the module cache: skipped)\n", m.pattern)
		}
	}
	if len(trees) == 0 {
		fmt.Println("no trees to measure")
		os.Exit(1)
	}

	fmt.Printf("machine: %d CPUs (GOMAXPROCS %d), %s %s/%s; best of %d runs per tool\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), goEnv("GOVERSION"), runtime.GOOS, runtime.GOARCH, *runs)
	fmt.Printf("%-22s %-8s %8s %9s %8s %6s %9s %8s\n", "tree", "tool", "wall s", "files/s", "pairs", "dups", "skip-cat", "speedup")
	var totalNaive, totalGolora time.Duration
	for _, t := range trees {
		var naive, golora measure
		for i := range *runs {
			n := runNaive(naiveBin, t, tmp)
			g := runGolora(goloraBin, t, tmp)
			if i == 0 || n.wall < naive.wall {
				naive.wall = n.wall
			}
			if i == 0 || g.wall < golora.wall {
				golora.wall = g.wall
			}
			naive.files, golora.files = n.files, g.files
		}
		newJudge(t, &naive).add(filepath.Join(tmp, "naive.jsonl"))
		jg := newJudge(t, &golora)
		jg.add(filepath.Join(tmp, "out", "train.jsonl"))
		jg.add(filepath.Join(tmp, "out", "eval.jsonl"))
		totalNaive += naive.wall
		totalGolora += golora.wall
		row(t.name, "naive", naive, "")
		row("", "golora", golora, fmt.Sprintf("%.2fx", naive.wall.Seconds()/golora.wall.Seconds()))
		cats := []string{}
		for k, v := range naive.skipped {
			cats = append(cats, fmt.Sprintf("%s %d", k, v))
		}
		sort.Strings(cats)
		fmt.Printf("%-22s naive skip-cat pairs: %s\n", "", strings.Join(cats, ", "))
	}
	fmt.Printf("\nall trees: naive %.2fs, golora %.2fs: golora is %.2fx faster (dedup on, near-dedup 0.85)\n",
		totalNaive.Seconds(), totalGolora.Seconds(), totalNaive.Seconds()/totalGolora.Seconds())
}

func row(name, tool string, m measure, speed string) {
	fmt.Printf("%-22s %-8s %8.2f %9.0f %8d %6d %9d %8s\n", name, tool, m.wall.Seconds(),
		float64(m.files)/m.wall.Seconds(), m.pairs, m.dups, m.skippedTotal(), speed)
}

func runNaive(bin string, t tree, tmp string) measure {
	out := filepath.Join(tmp, "naive.jsonl")
	start := time.Now()
	cmd := exec.Command(bin, t.dir, out)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	check(cmd.Run())
	wall := time.Since(start)
	var files int
	fmt.Sscanf(stderr.String(), "naive: %d files", &files)
	return measure{wall: wall, files: files}
}

func runGolora(bin string, t tree, tmp string) measure {
	cfg, _ := json.Marshal(map[string]any{
		"storeRoot": tmp, "outputPath": "out",
		"sources": []any{map[string]any{"name": "tree", "pvc": map[string]any{"claimName": "bench", "path": t.name}, "dir": t.dir}},
	})
	start := time.Now()
	cmd := exec.Command(bin, "run")
	cmd.Env = append(os.Environ(), "GOLORA_CONFIG="+string(cfg))
	out, err := cmd.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s\n", out)
		check(err)
	}
	wall := time.Since(start)
	var res struct{ FilesSeen int }
	b, err := os.ReadFile(filepath.Join(tmp, "out", "stats.json"))
	check(err)
	check(json.Unmarshal(b, &res))
	return measure{wall: wall, files: res.FilesSeen}
}

// record is a line of either tool's output.
type record struct {
	Instruction string `json:"instruction"`
	Output      string `json:"output"`
	Path        string `json:"path"`
	Meta        struct {
		Path string `json:"path"`
	} `json:"meta"`
}

// judge checks the pairs of one output.
type judge struct {
	t     tree
	m     *measure
	seen  map[string]bool
	files map[string][2]bool // per path: generated, build-ignored
}

func newJudge(t tree, m *measure) *judge {
	m.pairs, m.dups, m.skipped = 0, 0, map[string]int{}
	return &judge{t: t, m: m, seen: map[string]bool{}, files: map[string][2]bool{}}
}

func (j *judge) add(file string) {
	f, err := os.Open(file)
	check(err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<26)
	for sc.Scan() {
		var r record
		check(json.Unmarshal(sc.Bytes(), &r))
		j.m.pairs++
		path := r.Path
		if path == "" {
			path = r.Meta.Path
		}
		key := normalized(r.Output)
		if j.seen[key] {
			j.m.dups++
		}
		j.seen[key] = true
		if c := j.category(path, r.Instruction); c != "" {
			j.m.skipped[c]++
		}
	}
	check(sc.Err())
}

// category names the skipped category a pair belongs to, or "".
func (j *judge) category(path, instruction string) string {
	parts := strings.Split(path, "/")
	for _, p := range parts[:len(parts)-1] {
		switch p {
		case "vendor", "third_party", "Godeps":
			return "vendor"
		case "testdata":
			return "testdata"
		}
	}
	if strings.HasSuffix(path, "_test.go") {
		return "test"
	}
	flags, ok := j.files[path]
	if !ok {
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(j.t.dir, path), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err == nil {
			flags[0] = ast.IsGenerated(f)
			flags[1] = ignored(f)
		}
		j.files[path] = flags
	}
	switch {
	case flags[0]:
		return "generated"
	case flags[1]:
		return "buildIgnore"
	case strings.TrimSpace(instruction) == "":
		return "directiveOnly"
	}
	return ""
}

// ignored reports a build constraint (//go:build, else the +build lines)
// that no choice of tags satisfies unless "ignore" is set.
func ignored(f *ast.File) bool {
	var x constraint.Expr
	for _, g := range f.Comments {
		for _, c := range g.List {
			if c.Pos() > f.Package {
				break
			}
			e, err := constraint.Parse(c.Text)
			switch {
			case err != nil:
			case constraint.IsGoBuild(c.Text):
				return needsIgnore(e)
			case x == nil:
				x = e
			default:
				x = &constraint.AndExpr{X: x, Y: e}
			}
		}
	}
	return x != nil && needsIgnore(x)
}

func needsIgnore(x constraint.Expr) bool {
	var tags []string
	x.Eval(func(tag string) bool {
		if tag != "ignore" {
			tags = append(tags, tag)
		}
		return false
	})
	if len(tags) > 12 {
		return false
	}
	for mask := 0; mask < 1<<len(tags); mask++ {
		if x.Eval(func(tag string) bool {
			for i, t := range tags {
				if t == tag && mask&(1<<i) != 0 {
					return true
				}
			}
			return false
		}) {
			return false
		}
	}
	return true
}

// normalized spells src's tokens with go/scanner, comments dropped.
func normalized(src string) string {
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

// newest returns the match of pattern (path@version) with the highest version.
func newest(pattern string) string {
	m, _ := filepath.Glob(pattern)
	sort.Slice(m, func(a, b int) bool { return versionLess(m[a], m[b]) })
	if len(m) == 0 {
		return ""
	}
	return m[len(m)-1]
}

func versionLess(a, b string) bool {
	num := func(s string) []int {
		_, v, _ := strings.Cut(filepath.Base(s), "@v")
		v, _, _ = strings.Cut(v, "-")
		var out []int
		for _, p := range strings.Split(v, ".") {
			n := 0
			fmt.Sscanf(p, "%d", &n)
			out = append(out, n)
		}
		return out
	}
	x, y := num(a), num(b)
	for i := 0; i < len(x) && i < len(y); i++ {
		if x[i] != y[i] {
			return x[i] < y[i]
		}
	}
	return len(x) < len(y)
}

func goEnv(k string) string {
	out, err := exec.Command("go", "env", k).Output()
	check(err)
	return strings.TrimSpace(string(out))
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "extractor", "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no extractor/go.mod above the current directory")
		}
		dir = parent
	}
}

func run(name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	check(cmd.Run())
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}
