package source

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// GitHead returns the commit checked out in the git work tree holding dir,
// or "" when dir is not in one. It reads .git directly instead of running
// git, so a volume owned by another user (git's "dubious ownership") or an
// image without git still gets its revision.
func GitHead(dir string) string {
	for d := dir; ; {
		if gitDir := findGitDir(d); gitDir != "" {
			return readHead(gitDir)
		}
		parent := filepath.Dir(d)
		if parent == d {
			return ""
		}
		d = parent
	}
}

// findGitDir returns the git directory of a work tree rooted at d: d/.git,
// or the directory a ".git" file ("gitdir: ...") points to.
func findGitDir(d string) string {
	p := filepath.Join(d, ".git")
	fi, err := os.Stat(p)
	if err != nil {
		return ""
	}
	if fi.IsDir() {
		return p
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return ""
	}
	rest, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "gitdir:")
	if !ok {
		return ""
	}
	g := strings.TrimSpace(rest)
	if !filepath.IsAbs(g) {
		g = filepath.Join(d, g)
	}
	return g
}

func readHead(gitDir string) string {
	b, err := os.ReadFile(filepath.Join(gitDir, "HEAD"))
	if err != nil {
		return ""
	}
	head := strings.TrimSpace(string(b))
	if fullSHA.MatchString(head) {
		return head
	}
	ref, ok := strings.CutPrefix(head, "ref:")
	if !ok {
		return ""
	}
	ref = strings.TrimSpace(ref)
	if strings.Contains(ref, "..") {
		return ""
	}
	// A linked worktree keeps refs in the common directory.
	dirs := []string{gitDir}
	if c, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		common := strings.TrimSpace(string(c))
		if !filepath.IsAbs(common) {
			common = filepath.Join(gitDir, common)
		}
		dirs = append(dirs, common)
	}
	for _, g := range dirs {
		if b, err := os.ReadFile(filepath.Join(g, filepath.FromSlash(ref))); err == nil {
			if sha := strings.TrimSpace(string(b)); fullSHA.MatchString(sha) {
				return sha
			}
		}
		if sha := packedRef(filepath.Join(g, "packed-refs"), ref); sha != "" {
			return sha
		}
	}
	return ""
}

func packedRef(file, ref string) string {
	fh, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		sha, name, ok := strings.Cut(sc.Text(), " ")
		if ok && name == ref && fullSHA.MatchString(sha) {
			return sha
		}
	}
	return ""
}
