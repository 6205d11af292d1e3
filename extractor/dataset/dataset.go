// Package dataset splits pairs into train and eval and writes them to the
// store so that readers only ever see a whole dataset.
//
// Files are written into a temporary directory next to the final one,
// synced, and the directory is then renamed into place. A run that fails or
// is killed leaves at most a hidden temporary directory behind, never a
// half-written train.jsonl where the trainer looks for one.
package dataset

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The files of a dataset directory.
const (
	TrainFile  = "train.jsonl"
	EvalFile   = "eval.jsonl"
	StatsFile  = "stats.json"
	ResultFile = "result.json"
)

// IsEval reports whether a pair belongs to the eval split. The choice hashes
// the seed with the pair's text, so it depends on nothing else: the same
// pair lands in the same split on every run and machine, whatever else the
// dataset holds.
func IsEval(seed int64, fraction float64, instruction, output string) bool {
	if fraction <= 0 {
		return false
	}
	h := sha256.New()
	h.Write([]byte(strconv.FormatInt(seed, 10)))
	h.Write([]byte{0})
	h.Write([]byte(instruction))
	h.Write([]byte{0})
	h.Write([]byte(output))
	var sum [sha256.Size]byte
	u := binary.BigEndian.Uint64(h.Sum(sum[:0]))
	return float64(u>>11)/(1<<53) < fraction
}

// Result is the outcome of a run: stats.json, result.json and the status
// result all hold it.
type Result struct {
	FilesSeen    int            `json:"filesSeen"`
	FilesParsed  int            `json:"filesParsed"`
	ParseErrors  int            `json:"parseErrors"`
	PairsKept    int            `json:"pairsKept"`
	PairsTrain   int            `json:"pairsTrain"`
	PairsEval    int            `json:"pairsEval"`
	PerSource    map[string]int `json:"perSource"`
	Dropped      map[string]int `json:"dropped"`
	SkippedFiles map[string]int `json:"skippedFiles"`
	Digest       string         `json:"digest"`
	TrainPath    string         `json:"trainPath"`
	EvalPath     string         `json:"evalPath"`
	StatsPath    string         `json:"statsPath"`
	Lengths      Lengths        `json:"lengths"`
	Sources      []SourceInfo   `json:"sources,omitempty"`
}

// Lengths summarises output lengths in characters.
type Lengths struct {
	P50 int `json:"p50"`
	P90 int `json:"p90"`
	Max int `json:"max"`
}

// SourceInfo records what a source resolved to.
type SourceInfo struct {
	Name     string `json:"name"`
	Repo     string `json:"repo"`
	Revision string `json:"revision"`
	License  string `json:"license"`
	Pairs    int    `json:"pairs"`
}

// LengthsOf returns the nearest-rank p50 and p90 and the maximum of the
// output lengths chars.
func LengthsOf(chars []int) Lengths {
	if len(chars) == 0 {
		return Lengths{}
	}
	n := slices.Clone(chars)
	sort.Ints(n)
	rank := func(p float64) int {
		i := int(p*float64(len(n))+0.999999999) - 1
		return n[max(0, min(i, len(n)-1))]
	}
	return Lengths{P50: rank(0.5), P90: rank(0.9), Max: n[len(n)-1]}
}

// Writer builds a dataset directory in a temporary place and commits it.
type Writer struct {
	rel     string // output path relative to the store, slash-separated
	final   string // the dataset directory
	tmp     string // where it is built
	train   *os.File
	eval    *os.File
	trainW  *bufio.Writer
	evalW   *bufio.Writer
	trainE  *json.Encoder
	evalE   *json.Encoder
	nTrain  int
	nEval   int
	settled bool
}

// testHookBeforeSwap, when set, runs after the files are complete and
// before the directory is renamed into place; an error fails the commit.
var testHookBeforeSwap func() error

// Create starts a dataset at storeRoot/outputPath. It first tidies what an
// earlier run killed mid-way may have left: a dataset moved aside just
// before being replaced is put back, and old temporary directories go.
func Create(storeRoot, outputPath string) (*Writer, error) {
	final := filepath.Join(storeRoot, filepath.FromSlash(outputPath))
	parent, base := filepath.Dir(final), filepath.Base(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, err
	}
	tidy(parent, base, final)
	tmp, err := os.MkdirTemp(parent, "."+base+".tmp-")
	if err != nil {
		return nil, err
	}
	w := &Writer{rel: path.Clean(outputPath), final: final, tmp: tmp}
	// MkdirTemp makes it private; the trainer may run as another user.
	if err := os.Chmod(tmp, 0o755); err != nil {
		w.Abort()
		return nil, err
	}
	if w.train, err = os.Create(filepath.Join(tmp, TrainFile)); err == nil {
		w.eval, err = os.Create(filepath.Join(tmp, EvalFile))
	}
	if err != nil {
		w.Abort()
		return nil, err
	}
	w.trainW, w.evalW = bufio.NewWriterSize(w.train, 1<<20), bufio.NewWriterSize(w.eval, 1<<20)
	w.trainE, w.evalE = encoder(w.trainW), encoder(w.evalW)
	return w, nil
}

// staleAfter is how old a temporary directory must be before a new run
// removes it; younger ones may belong to a run still in progress.
const staleAfter = time.Hour

func tidy(parent, base, final string) {
	entries, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		p := filepath.Join(parent, name)
		switch {
		case strings.HasPrefix(name, "."+base+".old-"):
			if _, err := os.Lstat(final); errors.Is(err, os.ErrNotExist) {
				if os.Rename(p, final) == nil {
					continue
				}
			}
			os.RemoveAll(p)
		case strings.HasPrefix(name, "."+base+".tmp-"):
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleAfter {
				os.RemoveAll(p)
			}
		}
	}
}

func encoder(w io.Writer) *json.Encoder {
	e := json.NewEncoder(w)
	e.SetEscapeHTML(false) // Go code is full of <, > and &
	return e
}

// Add appends v as one JSON line of the train or eval file.
func (w *Writer) Add(v any, eval bool) error {
	if eval {
		w.nEval++
		return w.evalE.Encode(v)
	}
	w.nTrain++
	return w.trainE.Encode(v)
}

// AddLine appends an already encoded JSON line (ending in a newline).
func (w *Writer) AddLine(line []byte, eval bool) error {
	if eval {
		w.nEval++
		_, err := w.evalW.Write(line)
		return err
	}
	w.nTrain++
	_, err := w.trainW.Write(line)
	return err
}

// Commit completes res (split counts, digest, paths), writes stats.json and
// result.json, and moves the dataset into place, replacing any previous one.
func (w *Writer) Commit(res *Result) (err error) {
	defer func() {
		if err != nil {
			w.Abort()
		}
	}()
	for _, f := range []struct {
		b *bufio.Writer
		f *os.File
	}{{w.trainW, w.train}, {w.evalW, w.eval}} {
		if err := f.b.Flush(); err != nil {
			return err
		}
		if err := f.f.Sync(); err != nil {
			return err
		}
		if err := f.f.Close(); err != nil {
			return err
		}
	}
	digest := sha256.New()
	for _, name := range []string{TrainFile, EvalFile} {
		if err := hashFile(digest, filepath.Join(w.tmp, name)); err != nil {
			return err
		}
	}
	res.PairsTrain, res.PairsEval = w.nTrain, w.nEval
	res.PairsKept = w.nTrain + w.nEval
	res.Digest = "sha256:" + hex.EncodeToString(digest.Sum(nil))
	res.TrainPath = path.Join(w.rel, TrainFile)
	res.EvalPath = path.Join(w.rel, EvalFile)
	res.StatsPath = path.Join(w.rel, StatsFile)
	data, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	for _, name := range []string{StatsFile, ResultFile} {
		if err := writeSynced(filepath.Join(w.tmp, name), data); err != nil {
			return err
		}
	}
	if err := syncDir(w.tmp); err != nil {
		return err
	}
	if testHookBeforeSwap != nil {
		if err := testHookBeforeSwap(); err != nil {
			return err
		}
	}
	if err := w.swap(); err != nil {
		return err
	}
	w.settled = true
	return nil
}

// swap renames the temporary directory to the final name. An existing
// dataset is first moved aside and removed once the new one is in place.
func (w *Writer) swap() error {
	parent := filepath.Dir(w.final)
	var old string
	if _, err := os.Lstat(w.final); err == nil {
		old = filepath.Join(parent, "."+filepath.Base(w.final)+".old-"+randomSuffix())
		if err := os.Rename(w.final, old); err != nil {
			return fmt.Errorf("moving the previous dataset aside: %w", err)
		}
	}
	if err := os.Rename(w.tmp, w.final); err != nil {
		if old != "" {
			os.Rename(old, w.final)
		}
		return fmt.Errorf("moving the dataset into place: %w", err)
	}
	if err := syncDir(parent); err != nil {
		return err
	}
	if old != "" {
		os.RemoveAll(old)
	}
	return nil
}

// Abort removes the temporary directory; the previous dataset, if any, is
// left as it was.
func (w *Writer) Abort() {
	if w.settled {
		return
	}
	w.settled = true
	for _, f := range []*os.File{w.train, w.eval} {
		if f != nil {
			f.Close()
		}
	}
	os.RemoveAll(w.tmp)
}

func hashFile(h io.Writer, name string) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}

func writeSynced(name string, data []byte) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func randomSuffix() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
