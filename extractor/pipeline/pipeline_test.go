package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golora.dev/extractor/config"
	"golora.dev/extractor/dataset"
	"golora.dev/extractor/extract"
	"golora.dev/extractor/failure"
)

const fixture = "../extract/testdata/rules"

func fixtureConfig(t *testing.T) *config.Config {
	t.Helper()
	abs, err := filepath.Abs(fixture)
	if err != nil {
		t.Fatal(err)
	}
	c := config.Default()
	c.StoreRoot = t.TempDir()
	c.OutputPath = "datasets/ns/rules"
	c.Sources = []config.Source{{Name: "rules", PVC: &config.PVCSource{ClaimName: "fixtures", Path: "rules"}, Dir: abs}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return &c
}

func run(t *testing.T, c *config.Config) (*dataset.Result, error) {
	t.Helper()
	return Run(context.Background(), c, Options{Logf: t.Logf})
}

func readPairs(t *testing.T, file string) []extract.Pair {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ps []extract.Pair
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var p extract.Pair
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		ps = append(ps, p)
	}
	return ps
}

func TestFixtureEndToEnd(t *testing.T) {
	c := fixtureConfig(t)
	c.Split.EvalFraction = 0.3
	res, err := run(t, c)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{
		"noDoc": 1, "directiveOnly": 1, "tooShort": 1, "docTooShort": 1, "noBody": 1,
		"test": 1, "testdata": 1, "vendor": 3, "generated": 1, "buildIgnore": 2,
		"exactDuplicate": 1, "nearDuplicate": 1,
	}
	if !mapsEqual(res.Dropped, want) {
		t.Errorf("dropped %v\nwant    %v", res.Dropped, want)
	}
	if !mapsEqual(res.SkippedFiles, map[string]int{"test": 1, "testdata": 1, "vendor": 3, "generated": 1, "buildIgnore": 2}) {
		t.Errorf("skippedFiles %v", res.SkippedFiles)
	}
	if res.FilesSeen != 19 || res.FilesParsed != 10 || res.ParseErrors != 1 {
		t.Errorf("files seen %d parsed %d errors %d, want 19 10 1", res.FilesSeen, res.FilesParsed, res.ParseErrors)
	}
	if res.PairsKept != 12 || res.PerSource["rules"] != 12 || res.PairsTrain+res.PairsEval != 12 {
		t.Errorf("pairs %d (per source %v, train %d eval %d), want 12", res.PairsKept, res.PerSource, res.PairsTrain, res.PairsEval)
	}
	if res.Lengths.Max == 0 || res.Lengths.P50 > res.Lengths.P90 || res.Lengths.P90 > res.Lengths.Max {
		t.Errorf("lengths %+v", res.Lengths)
	}
	dir := filepath.Join(c.StoreRoot, "datasets", "ns", "rules")
	pairs := append(readPairs(t, filepath.Join(dir, "train.jsonl")), readPairs(t, filepath.Join(dir, "eval.jsonl"))...)
	names := map[string]int{}
	for _, p := range pairs {
		names[p.Meta.Name]++
		m := p.Meta
		if m.Source != "rules" || m.Repo != "fixtures/rules" || m.License != "MIT" || m.StartLine == 0 || m.EndLine < m.StartLine+4 {
			t.Errorf("meta %+v", m)
		}
	}
	// The first of each duplicate group is kept: linux before windows, Lines before Rows.
	if names["pageSize"] != 1 || names["normalizeLines"] != 1 || names["normalizeRows"] != 0 {
		t.Errorf("kept %v", names)
	}
	for _, p := range pairs {
		if p.Meta.Name == "pageSize" && p.Meta.Path != "variant_linux.go" {
			t.Errorf("kept the later variant %s", p.Meta.Path)
		}
	}
	var stats dataset.Result
	b, _ := os.ReadFile(filepath.Join(dir, "stats.json"))
	if err := json.Unmarshal(b, &stats); err != nil || stats.Digest != res.Digest {
		t.Errorf("stats.json %v %+v", err, stats)
	}
	if r, _ := os.ReadFile(filepath.Join(dir, "result.json")); !bytes.Equal(r, b) {
		t.Error("result.json differs from stats.json")
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestDeterministic(t *testing.T) {
	c := fixtureConfig(t)
	c.Split.EvalFraction = 0.4
	read := func() (string, string, string) {
		dir := filepath.Join(c.StoreRoot, c.OutputPath)
		tr, _ := os.ReadFile(filepath.Join(dir, "train.jsonl"))
		ev, _ := os.ReadFile(filepath.Join(dir, "eval.jsonl"))
		st, _ := os.ReadFile(filepath.Join(dir, "stats.json"))
		return string(tr), string(ev), string(st)
	}
	if _, err := Run(context.Background(), c, Options{Workers: 1}); err != nil {
		t.Fatal(err)
	}
	t1, e1, s1 := read()
	if _, err := Run(context.Background(), c, Options{Workers: 7}); err != nil {
		t.Fatal(err)
	}
	t2, e2, s2 := read()
	if t1 != t2 || e1 != e2 || s1 != s2 {
		t.Error("two runs (1 and 7 workers) wrote different datasets")
	}
	if e1 == "" {
		t.Error("no eval pairs at fraction 0.4")
	}
	c.Split.Seed = 1234
	if _, err := run(t, c); err != nil {
		t.Fatal(err)
	}
	t3, e3, _ := read()
	if t3 == t1 && e3 == e1 {
		t.Error("a different seed gave the same split")
	}
	if len(t3)+len(e3) != len(t1)+len(e1) {
		t.Error("a different seed changed the pairs, not only the split")
	}
}

func TestNearDedupOffAndMaxPairs(t *testing.T) {
	c := fixtureConfig(t)
	c.Filters.NearDedup = false
	res, err := run(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if res.PairsKept != 13 || res.Dropped["nearDuplicate"] != 0 || res.Dropped["exactDuplicate"] != 1 {
		t.Errorf("near dedup off: kept %d dropped %v", res.PairsKept, res.Dropped)
	}
	c.MaxPairs = 5
	res, err = run(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if res.PairsKept != 5 || res.Dropped["maxPairs"] != 8 {
		t.Errorf("maxPairs 5: kept %d, dropped %v", res.PairsKept, res.Dropped)
	}
}

func TestEmptyDataset(t *testing.T) {
	c := fixtureConfig(t)
	c.Filters.MinLines = 1000
	_, err := run(t, c)
	var fe *failure.Error
	if !errors.As(err, &fe) || fe.Reason != failure.EmptyDataset {
		t.Fatalf("err %v, want EmptyDataset", err)
	}
	for _, s := range []string{"rules (fixtures/rules)", "tooShort", "19 Go files seen"} {
		if !strings.Contains(fe.Message, s) {
			t.Errorf("message %q lacks %q", fe.Message, s)
		}
	}
	if _, err := os.Stat(filepath.Join(c.StoreRoot, c.OutputPath)); !os.IsNotExist(err) {
		t.Error("an empty run left a dataset")
	}

	c = fixtureConfig(t)
	c.Sources[0].Dir = t.TempDir() // no Go files at all
	_, err = run(t, c)
	if !errors.As(err, &fe) || fe.Reason != failure.EmptyDataset || !strings.Contains(fe.Message, "holds .go files") {
		t.Errorf("empty tree: %v", err)
	}

	c.Sources[0].Dir = filepath.Join(t.TempDir(), "nope")
	_, err = run(t, c)
	if !errors.As(err, &fe) || fe.Reason != failure.SourceNotFound || !strings.Contains(fe.Message, `claim "fixtures"`) {
		t.Errorf("missing pvc dir: %v", err)
	}
}

func TestContextTemplateEndToEnd(t *testing.T) {
	c := fixtureConfig(t)
	c.Template = "context"
	c.Split.EvalFraction = 0
	if _, err := run(t, c); err != nil {
		t.Fatal(err)
	}
	for _, p := range readPairs(t, filepath.Join(c.StoreRoot, c.OutputPath, "train.jsonl")) {
		if !strings.HasPrefix(p.Instruction, "In Go package `example.com/rules") {
			t.Errorf("instruction %q", p.Instruction)
		}
	}
}
