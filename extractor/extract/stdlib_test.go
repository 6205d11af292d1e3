package extract

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestCountPairsStandardLibrary checks, over every file of the standard
// library that parses (tests, testdata and vendor included), that the token
// counter used for skipped files agrees with the parser-based extractor.
func TestCountPairsStandardLibrary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	root := runtime.GOROOT()
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		root = strings.TrimSpace(string(out))
	}
	src := filepath.Join(root, "src")
	if _, err := os.Stat(src); err != nil {
		t.Skip(err)
	}
	o := defaults()
	o.IncludeTests, o.IncludeTestdata, o.IncludeVendor = true, true, true
	files, _, err := Walk(Tree{Root: src, Module: "std"}, o)
	if err != nil {
		t.Fatal(err)
	}
	bad := 0
	for i := range files {
		if !checkCount(t, &files[i], o) {
			if bad++; bad > 10 {
				t.Fatal("too many disagreements")
			}
		}
	}
	t.Logf("%d files compared", len(files))
}
