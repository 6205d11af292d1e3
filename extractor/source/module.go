package source

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"

	"golora.dev/extractor/config"
	"golora.dev/extractor/failure"
)

// modDownload is the part of `go mod download -json` output we use.
type modDownload struct {
	Path    string
	Version string
	Error   string
	Dir     string
}

func (f *Fetcher) module(ctx context.Context, s config.Source) (*Tree, error) {
	m := s.Module
	cache := f.workDir(config.ModCacheDir)
	fail := func(format string, args ...any) error {
		return failure.New(failure.SourceFetchFailed, "source %q: downloading module %s@%s: "+format,
			append([]any{s.Name, m.Path, m.Version}, args...)...)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fail("%v", err)
	}
	f.logf("downloading module %s@%s through GOPROXY", m.Path, m.Version)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", "--", m.Path+"@"+m.Version)
	// Outside any module, so the download does not depend on a go.mod.
	cmd.Dir = cache
	cmd.Env = f.goEnv(cache)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	runErr := cmd.Run()
	var d modDownload
	if err := json.Unmarshal(stdout.Bytes(), &d); err != nil && runErr == nil {
		return nil, fail("unreadable output of go mod download: %v", err)
	}
	if d.Error != "" {
		return nil, fail("%s", tail(strings.TrimSpace(d.Error), 2000))
	}
	if runErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = runErr.Error()
		}
		return nil, fail("%s", tail(msg, 2000))
	}
	if d.Dir == "" {
		return nil, fail("go mod download reported no directory")
	}
	return &Tree{Name: s.Name, Root: d.Dir, Repo: m.Path, Revision: d.Version, Module: m.Path}, nil
}

// goEnv is the environment for the go command: the module cache on the store,
// writable so it can be cleaned; GOPROXY and the rest come from the caller.
func (f *Fetcher) goEnv(cache string) []string {
	var env []string
	goflags := "-modcacherw"
	for _, kv := range f.env() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "GOMODCACHE", "GO111MODULE", "GOWORK":
			continue
		case "GOFLAGS":
			if v != "" {
				goflags = v + " " + goflags
			}
			continue
		}
		env = append(env, kv)
	}
	return append(env, "GOMODCACHE="+cache, "GOFLAGS="+goflags, "GO111MODULE=on", "GOWORK=off")
}
