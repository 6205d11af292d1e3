package extract

import (
	"bufio"
	"bytes"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golora.dev/extractor/license"
)

// File is a Go file found by Walk.
type File struct {
	Path      string // on disk
	Rel       string // slash-separated, relative to the tree root
	ImportDir string // import path of the file's directory, "" when no module is known
	License   string // SPDX id of the nearest license file above it
	Skip      Reason // a path rule (test, testdata, vendor) that excludes it, or None
	Origin    *Origin
}

// Tree describes the root being walked.
type Tree struct {
	Root    string // directory to walk
	Module  string // import path of Root when no go.mod says otherwise
	License string // license of the tree when no nearer license file exists
	Origin  Origin // recorded in every pair from the tree
}

// Walk lists the .go files under t.Root in a stable order (the lexical order
// of filepath.WalkDir) without following symbolic links, so kubernetes'
// vendor/ links into staging/ are not read twice and a link cannot lead out
// of the tree. Files excluded by a path rule are listed with their Skip
// reason so that the caller can count them; skipped counts the symbolic
// links met. Hidden directories (".git") are not entered.
func Walk(t Tree, o *Options) (files []File, skipped Counts, err error) {
	root, err := filepath.Abs(t.Root)
	if err != nil {
		return nil, skipped, err
	}
	w := walker{o: o, skipped: &skipped, origin: &t.Origin}
	mod := modRoot{rel: "", path: t.Module}
	err = w.dir(root, "", mod, t.License, None)
	return w.files, skipped, err
}

type walker struct {
	o       *Options
	origin  *Origin
	files   []File
	skipped *Counts
}

// modRoot is the innermost module containing a directory.
type modRoot struct {
	rel  string // its directory, relative to the tree root
	path string // its module path ("std" for the standard library)
}

func (m modRoot) importDir(rel string) string {
	if m.path == "" {
		return ""
	}
	sub := strings.TrimPrefix(strings.TrimPrefix(rel, m.rel), "/")
	if m.path == "std" { // GOROOT/src: import paths have no module prefix
		return sub
	}
	return path.Join(m.path, sub)
}

func (w *walker) dir(abs, rel string, mod modRoot, lic string, skip Reason) error {
	entries, err := os.ReadDir(abs)
	if err != nil {
		if rel == "" {
			return err
		}
		return nil // an unreadable subdirectory holds nothing we can use
	}
	hasLicense := false
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if e.Name() == "go.mod" {
			if p := modulePath(filepath.Join(abs, "go.mod")); p != "" {
				mod = modRoot{rel: rel, path: p}
			}
		} else if slices.Contains(license.Files, e.Name()) {
			hasLicense = true
		}
	}
	if hasLicense {
		if id, found := license.InDir(abs); found {
			lic = id
		}
	}
	for _, e := range entries {
		name := e.Name()
		childAbs := filepath.Join(abs, name)
		childRel := path.Join(rel, name)
		switch t := e.Type(); {
		case t&os.ModeSymlink != 0:
			if strings.HasSuffix(name, ".go") {
				w.skipped[Symlink]++
			} else if fi, err := os.Stat(childAbs); err == nil && fi.IsDir() {
				w.skipped[Symlink]++
			}
		case t.IsDir():
			if strings.HasPrefix(name, ".") {
				continue
			}
			childSkip := skip
			if childSkip == None {
				childSkip = w.dirRule(name)
			}
			if err := w.dir(childAbs, childRel, mod, lic, childSkip); err != nil {
				return err
			}
		case t.IsRegular():
			if !strings.HasSuffix(name, ".go") {
				continue
			}
			s := skip
			if s == None && strings.HasSuffix(name, "_test.go") && !w.o.IncludeTests {
				s = Test
			}
			w.files = append(w.files, File{
				Path: childAbs, Rel: childRel, ImportDir: mod.importDir(rel), License: lic, Skip: s,
				Origin: w.origin,
			})
		}
	}
	return nil
}

// dirRule returns the path rule a directory name triggers, unless included.
func (w *walker) dirRule(name string) Reason {
	switch name {
	case "testdata":
		if !w.o.IncludeTestdata {
			return Testdata
		}
	case "vendor", "third_party", "Godeps":
		if !w.o.IncludeVendor {
			return Vendor
		}
	}
	return None
}

// modulePath reads the module path from a go.mod file, "" if it has none.
func modulePath(file string) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return ""
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.Index(line, "//"); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 2 && f[0] == "module" {
			p := f[1]
			if uq, err := strconv.Unquote(p); err == nil {
				p = uq
			}
			return p
		}
	}
	return ""
}
