package dataset

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type pair struct {
	Instruction string `json:"instruction"`
	Output      string `json:"output"`
}

func pairs(n int) []pair {
	var ps []pair
	for i := range n {
		ps = append(ps, pair{fmt.Sprintf("F%d does thing %d.", i, i), fmt.Sprintf("func F%d() int {\n\treturn %d\n}", i, i)})
	}
	return ps
}

func TestSplitDeterministic(t *testing.T) {
	ps := pairs(2000)
	split := func(seed int64) []bool {
		var s []bool
		for _, p := range ps {
			s = append(s, IsEval(seed, 0.1, p.Instruction, p.Output))
		}
		return s
	}
	a, b, c := split(42), split(42), split(7)
	evals, differ := 0, 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("pair %d changed split between two runs with the same seed", i)
		}
		if a[i] {
			evals++
		}
		if a[i] != c[i] {
			differ++
		}
	}
	if evals < 150 || evals > 250 {
		t.Errorf("%d of 2000 pairs in eval at fraction 0.1", evals)
	}
	if differ == 0 {
		t.Error("a different seed gives the same split")
	}
	// Fixed expectation: the split must not change across machines or releases.
	if got := IsEval(42, 0.5, "a", "b"); got != IsEval(42, 0.5, "a", "b") {
		t.Error("unstable")
	}
	if IsEval(1, 0, "a", "b") {
		t.Error("fraction 0 put a pair in eval")
	}
}

func write(t *testing.T, store, out string, ps []pair) (*Result, error) {
	t.Helper()
	w, err := Create(store, out)
	if err != nil {
		return nil, err
	}
	for _, p := range ps {
		if err := w.Add(p, IsEval(42, 0.2, p.Instruction, p.Output)); err != nil {
			w.Abort()
			return nil, err
		}
	}
	res := &Result{FilesSeen: 1}
	return res, w.Commit(res)
}

func TestWriteAndReplace(t *testing.T) {
	store := t.TempDir()
	res, err := write(t, store, "datasets/ns/a", pairs(50))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(store, "datasets", "ns", "a")
	train, _ := os.ReadFile(filepath.Join(dir, TrainFile))
	eval, _ := os.ReadFile(filepath.Join(dir, EvalFile))
	if res.PairsKept != 50 || res.PairsTrain+res.PairsEval != 50 || res.PairsEval == 0 {
		t.Errorf("counts %+v", res)
	}
	if n := bytes.Count(train, []byte("\n")); n != res.PairsTrain {
		t.Errorf("train.jsonl has %d lines, result says %d", n, res.PairsTrain)
	}
	if res.TrainPath != "datasets/ns/a/train.jsonl" || res.StatsPath != "datasets/ns/a/stats.json" {
		t.Errorf("paths %q %q", res.TrainPath, res.StatsPath)
	}
	if !strings.HasPrefix(res.Digest, "sha256:") || len(res.Digest) != 7+64 {
		t.Errorf("digest %q", res.Digest)
	}
	stats, _ := os.ReadFile(filepath.Join(dir, StatsFile))
	result, _ := os.ReadFile(filepath.Join(dir, ResultFile))
	if !bytes.Equal(stats, result) {
		t.Error("stats.json and result.json differ")
	}
	var back Result
	if err := json.Unmarshal(stats, &back); err != nil || back.Digest != res.Digest {
		t.Errorf("stats.json: %v %+v", err, back)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o755 {
		t.Errorf("dataset directory mode %v, want world-readable", fi.Mode().Perm())
	}
	if strings.Contains(string(train), `\u003c`) {
		t.Error("HTML escaping in JSONL")
	}
	_ = eval

	// A second run replaces the dataset as a whole.
	if _, err := write(t, store, "datasets/ns/a", pairs(10)); err != nil {
		t.Fatal(err)
	}
	var back2 Result
	stats, _ = os.ReadFile(filepath.Join(dir, StatsFile))
	json.Unmarshal(stats, &back2)
	if back2.PairsKept != 10 {
		t.Errorf("after replace: %d pairs", back2.PairsKept)
	}
	assertNoLeftovers(t, filepath.Dir(dir))
}

func assertNoLeftovers(t *testing.T, parent string) {
	t.Helper()
	entries, _ := os.ReadDir(parent)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("left behind: %s", e.Name())
		}
	}
}

func TestFailedWriteKeepsPreviousDataset(t *testing.T) {
	store := t.TempDir()
	if _, err := write(t, store, "datasets/ns/a", pairs(20)); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(store, "datasets", "ns", "a")
	before, _ := os.ReadFile(filepath.Join(dir, TrainFile))

	boom := errors.New("disk full")
	testHookBeforeSwap = func() error { return boom }
	defer func() { testHookBeforeSwap = nil }()
	if _, err := write(t, store, "datasets/ns/a", pairs(5)); !errors.Is(err, boom) {
		t.Fatalf("commit error %v, want %v", err, boom)
	}
	after, _ := os.ReadFile(filepath.Join(dir, TrainFile))
	if !bytes.Equal(before, after) {
		t.Error("a failed write changed the previous dataset")
	}
	assertNoLeftovers(t, filepath.Dir(dir))

	// A failure before any dataset existed leaves nothing visible.
	if _, err := write(t, store, "datasets/ns/b", pairs(5)); err == nil {
		t.Fatal("expected failure")
	}
	if _, err := os.Stat(filepath.Join(store, "datasets", "ns", "b")); !os.IsNotExist(err) {
		t.Errorf("partial dataset visible: %v", err)
	}
	assertNoLeftovers(t, filepath.Join(store, "datasets", "ns"))
}

func TestKilledRunRecovered(t *testing.T) {
	store := t.TempDir()
	if _, err := write(t, store, "datasets/ns/a", pairs(20)); err != nil {
		t.Fatal(err)
	}
	parent := filepath.Join(store, "datasets", "ns")
	// A run killed mid-write: its temporary directory stays, invisible.
	w, err := Create(store, "datasets/ns/a")
	if err != nil {
		t.Fatal(err)
	}
	w.Add(pair{"x", "y"}, false)
	old := time.Now().Add(-2 * staleAfter)
	os.Chtimes(w.tmp, old, old)
	// A run killed between moving the old dataset aside and renaming the
	// new one in: the old one is restored by the next run.
	os.Rename(filepath.Join(parent, "a"), filepath.Join(parent, ".a.old-123"))

	w2, err := Create(store, "datasets/ns/a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(parent, "a", TrainFile)); err != nil {
		t.Errorf("moved-aside dataset not restored: %v", err)
	}
	if _, err := os.Stat(w.tmp); !os.IsNotExist(err) {
		t.Errorf("stale temporary directory kept: %v", err)
	}
	w2.Abort()
	assertNoLeftovers(t, parent)
}

func TestLengths(t *testing.T) {
	var outs []int
	for i := 10; i >= 1; i-- {
		outs = append(outs, i*10)
	}
	got := LengthsOf(outs)
	if got != (Lengths{P50: 50, P90: 90, Max: 100}) {
		t.Errorf("LengthsOf = %+v", got)
	}
	if LengthsOf(nil) != (Lengths{}) {
		t.Error("empty")
	}
}
