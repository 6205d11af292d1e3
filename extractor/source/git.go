package source

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"golora.dev/extractor/config"
	"golora.dev/extractor/failure"
)

// Askpass mode: git runs GIT_ASKPASS with the prompt as its only argument.
// The binary answers from the credentials file named by AskpassFileEnv.
const (
	AskpassFileEnv = "GOLORA_ASKPASS_FILE"
	// DefaultGitUser is the user name given with a token when the credentials
	// directory holds no "username" file; GitHub and most forges accept any.
	DefaultGitUser = "x-access-token"
)

var hexSHA = regexp.MustCompile(`^[0-9a-fA-F]{7,64}$`)

func (f *Fetcher) git(ctx context.Context, s config.Source) (*Tree, error) {
	g := s.Git
	if err := config.CheckGitURL(g.URL); err != nil {
		return nil, failure.New(failure.InvalidSource, "source %q: %v", s.Name, err)
	}
	dir := f.workDir(s.Name)
	env, err := f.gitEnv(g)
	if err != nil {
		return nil, failure.New(failure.SourceFetchFailed, "source %q: %v", s.Name, err)
	}
	fail := func(step string, err error) error {
		return failure.New(failure.SourceFetchFailed, "%s", redactURL(fmt.Sprintf(
			"source %q: %s %s at %q failed: %v", s.Name, step, g.URL, g.Revision, err)))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fail("creating work directory for", err)
	}
	run := func(args ...string) (string, error) { return runGit(ctx, dir, env, args...) }
	if _, err := run("init", "-q", "--", "."); err != nil {
		return nil, fail("git init for", err)
	}
	f.logf("fetching %s at %s (shallow)", redactURL(g.URL), g.Revision)
	_, err = run("-c", "credential.helper=", "fetch", "--quiet", "--depth", "1", "--no-tags",
		"--no-recurse-submodules", "--", g.URL, g.Revision)
	target := "FETCH_HEAD"
	if err != nil {
		if !hexSHA.MatchString(g.Revision) {
			return nil, fail("fetching", err)
		}
		// Some servers refuse a shallow fetch of a bare SHA: fetch every
		// branch and tag, then check the commit out by name.
		f.logf("shallow fetch refused (%v); fetching full history", oneLine(err))
		args := []string{"-c", "credential.helper=", "fetch", "--quiet", "--no-tags", "--no-recurse-submodules"}
		if _, serr := os.Stat(filepath.Join(dir, ".git", "shallow")); serr == nil {
			args = append(args, "--unshallow")
		}
		args = append(args, "--", g.URL, "+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*")
		if _, err2 := run(args...); err2 != nil {
			return nil, fail("fetching", err2)
		}
		target = g.Revision
	}
	if _, err := run("checkout", "-q", "--force", "--detach", target, "--"); err != nil {
		return nil, fail("checking out", err)
	}
	if _, err := run("clean", "-q", "-ffdx"); err != nil {
		return nil, fail("cleaning checkout of", err)
	}
	head, err := run("rev-parse", "--verify", "HEAD^{commit}")
	if err != nil {
		return nil, fail("resolving", err)
	}
	return &Tree{Name: s.Name, Root: dir, Repo: g.URL, Revision: head}, nil
}

// gitEnv is the environment for git: no prompts, only remote transports,
// and when there are credentials, this binary as the askpass helper.
func (f *Fetcher) gitEnv(g *config.GitSource) ([]string, error) {
	var env []string
	for _, kv := range f.env() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_ASKPASS",
			"SSH_ASKPASS", "GIT_TERMINAL_PROMPT", "GIT_ALLOW_PROTOCOL", AskpassFileEnv:
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "GIT_TERMINAL_PROMPT=0", "GIT_ALLOW_PROTOCOL=https:http:ssh")
	if g.CredentialsFile != "" {
		if _, err := os.ReadFile(g.CredentialsFile); err != nil {
			return nil, fmt.Errorf("reading credentials file: %v (is the Secret mounted?)", err)
		}
		exe := f.Askpass
		if exe == "" {
			var err error
			if exe, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("locating askpass helper: %v", err)
			}
		}
		env = append(env, "GIT_ASKPASS="+exe, AskpassFileEnv+"="+g.CredentialsFile)
	}
	return env, nil
}

// runGit runs git with an argument list in dir and returns its trimmed
// stdout; on failure the error holds git's trimmed stderr.
func runGit(ctx context.Context, dir string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	cmd.Stdin = nil
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return "", fmt.Errorf("%s", tail(msg, 2000))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Askpass answers one git credential prompt from the credentials file: the
// token for a password prompt, and for a username prompt the content of a
// "username" file next to it, or DefaultGitUser.
func Askpass(prompt, file string) (string, error) {
	if strings.HasPrefix(strings.ToLower(strings.TrimSpace(prompt)), "username") {
		if b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "username")); err == nil {
			if u := strings.TrimSpace(string(b)); u != "" {
				return u, nil
			}
		}
		return DefaultGitUser, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

var userinfo = regexp.MustCompile(`://[^/@]*@`)

// redactURL hides user info (which may hold a password) in messages.
func redactURL(u string) string { return userinfo.ReplaceAllString(u, "://***@") }

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

func oneLine(err error) string {
	s := err.Error()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}
