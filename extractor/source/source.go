// Package source turns a configured source into a directory of Go code on disk.
//
// A pvc source is already mounted; a git source is fetched shallowly at one
// revision; a module source is downloaded through GOPROXY. Every external
// command gets an argument list, never a shell string, and credentials reach
// git only through an askpass helper, never a command line or URL.
package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golora.dev/extractor/config"
	"golora.dev/extractor/failure"
	"golora.dev/extractor/license"
)

// Tree is a source ready to walk.
type Tree struct {
	Name     string // the source's name in the config
	Root     string // absolute directory holding the code
	Repo     string // git URL, module path, or pvc claim/path
	Revision string // commit SHA, module version, or "" when unknown
	Module   string // import path of Root when no go.mod says otherwise ("" if unknown)
	License  string // SPDX id found at Root, "" when none was recognised
}

// Fetcher resolves sources into trees, fetching into the work directory.
type Fetcher struct {
	StoreRoot string   // the store volume
	WorkPath  string   // relative to StoreRoot: fetched sources go here
	Env       []string // environment for git and go; nil means os.Environ()
	Askpass   string   // program git runs as GIT_ASKPASS; "" means this executable
	Logf      func(format string, args ...any)
}

// Resolve returns the tree for s, fetching it first if needed.
func (f *Fetcher) Resolve(ctx context.Context, s config.Source) (*Tree, error) {
	var t *Tree
	var err error
	switch {
	case s.PVC != nil:
		t, err = f.pvc(s)
	case s.Git != nil:
		t, err = f.git(ctx, s)
	case s.Module != nil:
		t, err = f.module(ctx, s)
	default:
		return nil, failure.New(failure.InvalidConfig, "source %q has no pvc, git or module", s.Name)
	}
	if err != nil {
		return nil, err
	}
	t.License = license.Detect(t.Root)
	return t, nil
}

func (f *Fetcher) pvc(s config.Source) (*Tree, error) {
	where := fmt.Sprintf("claim %q path %q (mounted at %s)", s.PVC.ClaimName, s.PVC.Path, s.Dir)
	fi, err := os.Stat(s.Dir)
	if err != nil {
		return nil, failure.New(failure.SourceNotFound, "source %q: %s does not exist: check the claim and path", s.Name, where)
	}
	if !fi.IsDir() {
		return nil, failure.New(failure.SourceNotFound, "source %q: %s is not a directory", s.Name, where)
	}
	root, err := filepath.EvalSymlinks(s.Dir)
	if err != nil {
		return nil, failure.New(failure.SourceNotFound, "source %q: %s: %v", s.Name, where, err)
	}
	root, _ = filepath.Abs(root)
	return &Tree{Name: s.Name, Root: root, Repo: s.Describe(), Revision: GitHead(root)}, nil
}

func (f *Fetcher) workDir(elem ...string) string {
	return filepath.Join(append([]string{f.StoreRoot, filepath.FromSlash(f.WorkPath)}, elem...)...)
}

func (f *Fetcher) env() []string {
	if f.Env != nil {
		return f.Env
	}
	return os.Environ()
}

func (f *Fetcher) logf(format string, args ...any) {
	if f.Logf != nil {
		f.Logf(format, args...)
	}
}
