// Package pipeline runs one extraction: fetch the sources, parse them, drop
// duplicates, split, and write the dataset.
//
// Everything that can vary between runs (parallelism, map order) is kept out
// of the output: files are walked and pairs kept in a stable order (source
// order in the config, then path, then line), so the same inputs always give
// byte-identical train.jsonl and eval.jsonl.
package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golora.dev/extractor/config"
	"golora.dev/extractor/dataset"
	"golora.dev/extractor/dedup"
	"golora.dev/extractor/extract"
	"golora.dev/extractor/failure"
	"golora.dev/extractor/report"
	"golora.dev/extractor/source"
)

// Options are the parts of a run that do not come from the config.
type Options struct {
	Env      []string                         // environment for git and go; nil means os.Environ()
	Askpass  string                           // askpass program for git; "" means this executable
	Workers  int                              // parser goroutines; 0 means GOMAXPROCS
	Reporter *report.Reporter                 // status reporting; nil for none
	Logf     func(format string, args ...any) // human-readable progress; nil for none
	// LogEvery is the interval of progress lines and patches (default 2s).
	LogEvery time.Duration
}

// CountSkipped makes the run read the files a rule skips as well and count
// the pairs they would have given (a token scan, no syntax tree), so that
// stats.json says how many pairs each file rule removed.
var CountSkipped = true

// Run performs the extraction described by cfg. Errors are *failure.Error.
func Run(ctx context.Context, cfg *config.Config, o Options) (*dataset.Result, error) {
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	if o.LogEvery == 0 {
		o.LogEvery = 2 * time.Second
	}
	if fi, err := os.Stat(cfg.StoreRoot); err != nil || !fi.IsDir() {
		return nil, failure.New(failure.InvalidConfig, "storeRoot %q is not a directory (is the store volume mounted?)", cfg.StoreRoot)
	}
	storeRoot, err := filepath.Abs(cfg.StoreRoot) // GOMODCACHE must be absolute
	if err != nil {
		return nil, failure.New(failure.InvalidConfig, "storeRoot %q: %v", cfg.StoreRoot, err)
	}
	start := time.Now()
	p := &progress{o: o}
	p.stage("fetching")

	fetcher := &source.Fetcher{StoreRoot: storeRoot, WorkPath: cfg.WorkPath, Env: o.Env, Askpass: o.Askpass, Logf: o.Logf}
	trees := make([]*source.Tree, len(cfg.Sources))
	for i, s := range cfg.Sources {
		t, err := fetcher.Resolve(ctx, s)
		if err != nil {
			return nil, err
		}
		o.Logf("source %s: %s at %q in %s (license %q)", t.Name, t.Repo, t.Revision, t.Root, t.License)
		trees[i] = t
	}

	opts := optionsFrom(cfg)
	p.stage("parsing")
	stop := p.tick()
	var files []extract.File
	var skipped extract.Counts
	for _, t := range trees {
		fs, sk, err := extract.Walk(extract.Tree{
			Root: t.Root, Module: t.Module, License: t.License,
			Origin: extract.Origin{Source: t.Name, Repo: t.Repo, Revision: t.Revision},
		}, opts)
		if err != nil {
			stop()
			return nil, failure.New(failure.SourceNotFound, "source %q: walking %s: %v", t.Name, t.Root, err)
		}
		files = append(files, fs...)
		skipped.Add(&sk)
		p.filesSeen.Add(int64(len(fs)))
	}
	o.Logf("found %d Go files in %.2fs", len(files), time.Since(start).Seconds())

	// Each worker also fingerprints, splits and encodes the pairs of the
	// files it parsed, so that only the order-dependent part (dedup, the
	// cap, the write) runs on one goroutine.
	near := cfg.Filters.NearDedup
	prepared := make([][]item, len(files))
	results := extract.ParseAll(ctx, files, opts, o.Workers, func(i int, r *extract.FileResult) {
		if r.Skip == extract.None && r.ParseError == nil {
			p.filesParsed.Add(1)
		}
		if len(r.Pairs) == 0 {
			return
		}
		its := make([]item, len(r.Pairs))
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false) // Go code is full of <, > and &
		for j := range r.Pairs {
			pr := &r.Pairs[j]
			buf.Reset()
			if err := enc.Encode(pr); err != nil {
				panic(err) // strings and ints always encode
			}
			its[j] = item{
				fp:     dedup.Of(pr.Output, near),
				line:   bytes.Clone(buf.Bytes()),
				eval:   dataset.IsEval(cfg.Split.Seed, cfg.Split.EvalFraction, pr.Instruction, pr.Output),
				chars:  utf8.RuneCountInString(pr.Output),
				source: pr.Meta.Source,
			}
		}
		prepared[i] = its
		r.Pairs = nil // the encoded lines are all that is needed from here on
		p.pairs.Add(int64(len(its)))
	})
	stop()
	if err := ctx.Err(); err != nil {
		return nil, failure.New(failure.Internal, "interrupted: %v", err)
	}

	res := &dataset.Result{FilesSeen: len(files), PerSource: map[string]int{}}
	for _, t := range trees {
		res.PerSource[t.Name] = 0 // listed even when a source gives nothing
	}
	var dropped extract.Counts
	var items []item
	for i, r := range results {
		switch {
		case r.Skip != extract.None:
			skipped[r.Skip]++
		case r.ParseError != nil:
			res.ParseErrors++
			o.Logf("parse error (skipped): %s", firstLine(r.ParseError.Error()))
		default:
			res.FilesParsed++
		}
		dropped.Add(&r.Dropped)
		items = append(items, prepared[i]...)
	}
	o.Logf("parsed %d of %d files (%d failed to parse) at %.2fs: %d candidate pairs",
		res.FilesParsed, res.FilesSeen, res.ParseErrors, time.Since(start).Seconds(), len(items))

	p.stage("deduplicating")
	ix := dedup.NewIndex(near, cfg.Filters.NearDedupThreshold)
	var kept []item
	for _, it := range items {
		switch ix.Add(it.fp) {
		case dedup.Exact:
			dropped[extract.ExactDuplicate]++
		case dedup.Near:
			dropped[extract.NearDuplicate]++
		default:
			if cfg.MaxPairs > 0 && len(kept) >= cfg.MaxPairs {
				dropped[extract.MaxPairs]++
				continue
			}
			kept = append(kept, it)
		}
	}
	res.Dropped = dropped.Map()
	res.SkippedFiles = skipped.Map()
	p.pairs.Store(int64(len(kept)))

	o.Logf("deduplicated at %.2fs: %d pairs kept", time.Since(start).Seconds(), len(kept))
	if len(kept) == 0 {
		return nil, failure.New(failure.EmptyDataset, "%s", emptyMessage(cfg, res))
	}

	p.stage("writing")
	w, err := dataset.Create(storeRoot, cfg.OutputPath)
	if err != nil {
		return nil, failure.New(failure.WriteFailed, "creating dataset under %s: %v", storeRoot, err)
	}
	chars := make([]int, len(kept))
	for i, it := range kept {
		chars[i] = it.chars
		res.PerSource[it.source]++
		if err := w.AddLine(it.line, it.eval); err != nil {
			w.Abort()
			return nil, failure.New(failure.WriteFailed, "writing dataset: %v", err)
		}
	}
	res.Lengths = dataset.LengthsOf(chars)
	for _, t := range trees {
		res.Sources = append(res.Sources, dataset.SourceInfo{
			Name: t.Name, Repo: t.Repo, Revision: t.Revision, License: t.License, Pairs: res.PerSource[t.Name],
		})
	}
	if err := w.Commit(res); err != nil {
		return nil, failure.New(failure.WriteFailed, "writing dataset to %s: %v", cfg.OutputPath, err)
	}
	o.Logf("wrote %d pairs (%d train, %d eval) to %s in %.2fs; dropped %s",
		res.PairsKept, res.PairsTrain, res.PairsEval, cfg.OutputPath, time.Since(start).Seconds(), formatCounts(res.Dropped))
	return res, nil
}

// item is a pair ready to be deduplicated and written.
type item struct {
	fp     dedup.Fingerprint
	line   []byte // the pair as one JSON line
	eval   bool   // in the eval split
	chars  int    // characters of its output
	source string
}

func optionsFrom(cfg *config.Config) *extract.Options {
	f := cfg.Filters
	return &extract.Options{
		MinLines: f.MinLines, MinDocWords: f.MinDocWords, MaxOutputBytes: f.MaxOutputBytes,
		ExportedOnly: f.ExportedOnly, IncludeTests: f.IncludeTests, IncludeTestdata: f.IncludeTestdata,
		IncludeVendor: f.IncludeVendor, IncludeGenerated: f.IncludeGenerated,
		IncludeBuildIgnored: f.IncludeBuildIgnored, Template: cfg.Template, CountSkipped: CountSkipped,
	}
}

// emptyMessage says what was read and where everything went, so that the
// user can tell a wrong path (no files) from filters that are too strict.
func emptyMessage(cfg *config.Config, res *dataset.Result) string {
	var srcs []string
	for _, s := range cfg.Sources {
		srcs = append(srcs, fmt.Sprintf("%s (%s)", s.Name, s.Describe()))
	}
	msg := fmt.Sprintf("no pairs extracted from %s: %d Go files seen, %d parsed, %d parse errors",
		strings.Join(srcs, ", "), res.FilesSeen, res.FilesParsed, res.ParseErrors)
	if len(res.Dropped) > 0 {
		msg += "; functions dropped: " + formatCounts(res.Dropped)
	}
	if len(res.SkippedFiles) > 0 {
		msg += "; files skipped: " + formatCounts(res.SkippedFiles)
	}
	if res.FilesSeen == 0 {
		msg += "; check that the source path holds .go files"
	} else {
		msg += "; relax filters (minLines, minDocWords, include*) if this is unexpected"
	}
	return msg
}

func formatCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// progress publishes the run's counters to the log and the reporter.
type progress struct {
	o           Options
	mu          sync.Mutex
	current     string
	filesSeen   atomic.Int64
	filesParsed atomic.Int64
	pairs       atomic.Int64
}

func (p *progress) snapshot() report.Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	return report.Progress{Stage: p.current, FilesSeen: int(p.filesSeen.Load()),
		FilesParsed: int(p.filesParsed.Load()), Pairs: int(p.pairs.Load())}
}

func (p *progress) stage(s string) {
	p.mu.Lock()
	p.current = s
	p.mu.Unlock()
	p.publish()
}

func (p *progress) publish() {
	s := p.snapshot()
	p.o.Logf("%s: %d files seen, %d parsed, %d pairs", s.Stage, s.FilesSeen, s.FilesParsed, s.Pairs)
	p.o.Reporter.Progress(s)
}

// tick publishes every LogEvery until the returned stop is called.
func (p *progress) tick() (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(p.o.LogEvery)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				p.publish()
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}
