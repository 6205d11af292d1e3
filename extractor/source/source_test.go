package source

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golora.dev/extractor/config"
	"golora.dev/extractor/failure"
)

// TestMain lets the test binary stand in for golora-extract as git's
// askpass helper, the way the real binary does.
func TestMain(m *testing.M) {
	if file := os.Getenv(AskpassFileEnv); file != "" {
		answer, err := Askpass(strings.Join(os.Args[1:], " "), file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println(answer)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func needGit(t *testing.T) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Skip("git not installed")
	}
	return git
}

// baseEnv is an environment free of the user's git configuration.
func baseEnv(t *testing.T) []string {
	home := t.TempDir()
	return []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com"}
}

func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = baseEnv(t)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitServer serves a bare repository over smart HTTP (git http-backend as
// CGI), optionally behind basic auth. It returns the repository URL and the
// commits: first (not a branch tip) and second (tagged v1.0.0, main).
func gitServer(t *testing.T, token string) (url string, first, second string) {
	git := needGit(t)
	root := t.TempDir()
	work := filepath.Join(root, "work")
	os.MkdirAll(work, 0o755)
	gitCmd(t, work, "init", "-q", "-b", "main")
	os.WriteFile(filepath.Join(work, "a.go"), []byte("package a\n\n// A returns one, slowly.\nfunc A() int {\n\tx := 0\n\tx++\n\treturn x\n}\n"), 0o644)
	gitCmd(t, work, "add", ".")
	gitCmd(t, work, "commit", "-q", "-m", "one")
	first = gitCmd(t, work, "rev-parse", "HEAD")
	os.WriteFile(filepath.Join(work, "b.go"), []byte("package a\n\n// B returns two.\nfunc B() int { return 2 }\n"), 0o644)
	gitCmd(t, work, "add", ".")
	gitCmd(t, work, "commit", "-q", "-m", "two")
	gitCmd(t, work, "tag", "v1.0.0")
	second = gitCmd(t, work, "rev-parse", "HEAD")
	gitCmd(t, root, "clone", "-q", "--bare", work, filepath.Join(root, "repo.git"))

	backend := &cgi.Handler{
		Path: git, Args: []string{"http-backend"}, Root: "/git",
		Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + root},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			user, pass, ok := r.BasicAuth()
			if !ok || user != DefaultGitUser || pass != token {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/git/repo.git", first, second
}

func fetcher(t *testing.T, env ...string) *Fetcher {
	return &Fetcher{StoreRoot: t.TempDir(), WorkPath: ".work/ds", Env: append(baseEnv(t), env...), Logf: t.Logf}
}

func gitSource(url, rev, creds string) config.Source {
	return config.Source{Name: "repo", Git: &config.GitSource{URL: url, Revision: rev, CredentialsFile: creds}}
}

func wantFailure(t *testing.T, err error, reason failure.Reason, msg ...string) {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v, want %s", err, reason)
	}
	if fe.Reason != reason {
		t.Errorf("reason %s (%s), want %s", fe.Reason, fe.Message, reason)
	}
	for _, m := range msg {
		if !strings.Contains(fe.Message, m) {
			t.Errorf("message %q does not mention %q", fe.Message, m)
		}
	}
}

func TestGitFetchTagAndSHA(t *testing.T) {
	url, first, second := gitServer(t, "")
	f := fetcher(t)
	tree, err := f.Resolve(context.Background(), gitSource(url, "v1.0.0", ""))
	if err != nil {
		t.Fatal(err)
	}
	if tree.Revision != second || tree.Repo != url {
		t.Errorf("tree %+v, want revision %s", tree, second)
	}
	if tree.Root != filepath.Join(f.StoreRoot, ".work", "ds", "repo") {
		t.Errorf("root %s", tree.Root)
	}
	if _, err := os.Stat(filepath.Join(tree.Root, "b.go")); err != nil {
		t.Error(err)
	}
	if shallow, _ := os.ReadFile(filepath.Join(tree.Root, ".git", "shallow")); len(shallow) == 0 {
		t.Error("fetch was not shallow")
	}
	// Refetch the same directory at an older commit, by SHA.
	tree, err = f.Resolve(context.Background(), gitSource(url, first, ""))
	if err != nil {
		t.Fatal(err)
	}
	if tree.Revision != first {
		t.Errorf("revision %s, want %s", tree.Revision, first)
	}
	if _, err := os.Stat(filepath.Join(tree.Root, "b.go")); !os.IsNotExist(err) {
		t.Error("b.go from the later commit is still checked out")
	}
}

func TestGitFetchFallsBackWhenShallowSHARefused(t *testing.T) {
	url, first, _ := gitServer(t, "")
	// Protocol v0 servers refuse a want for a commit that is no ref tip.
	f := fetcher(t, "GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=protocol.version", "GIT_CONFIG_VALUE_0=0")
	tree, err := f.Resolve(context.Background(), gitSource(url, first, ""))
	if err != nil {
		t.Fatal(err)
	}
	if tree.Revision != first {
		t.Errorf("revision %s, want %s", tree.Revision, first)
	}
	// An abbreviated SHA works the same way.
	tree, err = f.Resolve(context.Background(), gitSource(url, first[:10], ""))
	if err != nil || tree.Revision != first {
		t.Fatalf("short SHA: %v %+v", err, tree)
	}
}

func TestGitCredentialsViaAskpass(t *testing.T) {
	const token = "tok3n-very-secret"
	url, _, second := gitServer(t, token)

	trace := filepath.Join(t.TempDir(), "trace")
	f := fetcher(t, "GIT_TRACE="+trace)
	_, err := f.Resolve(context.Background(), gitSource(url, "v1.0.0", ""))
	wantFailure(t, err, failure.SourceFetchFailed, "repo", "v1.0.0")

	creds := filepath.Join(t.TempDir(), "token")
	os.WriteFile(creds, []byte(token+"\n"), 0o600)
	tree, err := f.Resolve(context.Background(), gitSource(url, "v1.0.0", creds))
	if err != nil {
		t.Fatal(err)
	}
	if tree.Revision != second {
		t.Errorf("revision %s", tree.Revision)
	}
	tr, _ := os.ReadFile(trace)
	if !strings.Contains(string(tr), "Password for") {
		t.Errorf("askpass was not used; trace:\n%s", tr)
	}
	if strings.Contains(string(tr), token) {
		t.Errorf("the token appears in git's command trace")
	}
	cfg, _ := os.ReadFile(filepath.Join(tree.Root, ".git", "config"))
	if strings.Contains(string(cfg), token) {
		t.Error("the token was stored in .git/config")
	}

	_, err = f.Resolve(context.Background(), gitSource(url, "v1.0.0", filepath.Join(t.TempDir(), "missing")))
	wantFailure(t, err, failure.SourceFetchFailed, "credentials file")
}

func TestGitShellMetacharactersAreJustURLs(t *testing.T) {
	needGit(t)
	dir := t.TempDir()
	marker := filepath.Join(dir, "pwned")
	f := fetcher(t)
	for _, s := range []config.Source{
		gitSource("https://127.0.0.1:1/r;touch "+marker, "main", ""),
		gitSource("https://127.0.0.1:1/r$(touch "+marker+")", "main", ""),
		gitSource("https://127.0.0.1:1/r`touch "+marker+"`", "main", ""),
		gitSource("https://127.0.0.1:1/r|touch "+marker, "main", ""),
		gitSource("https://127.0.0.1:1/r", "main;touch${IFS}"+marker, ""),
		gitSource("https://127.0.0.1:1/r", "$(touch${IFS}"+marker+")", ""),
	} {
		_, err := f.Resolve(context.Background(), s)
		wantFailure(t, err, failure.SourceFetchFailed)
	}
	for _, u := range []string{"ext::sh -c touch% " + marker, "file://" + dir, dir, "-u" + marker, "--upload-pack=touch " + marker} {
		_, err := f.Resolve(context.Background(), gitSource(u, "main", ""))
		wantFailure(t, err, failure.InvalidSource)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Fatal("a URL or revision was executed by a shell")
	}
}

func TestAskpass(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "token")
	os.WriteFile(tok, []byte("abc\n"), 0o600)
	if got, _ := Askpass("Username for 'https://github.com': ", tok); got != DefaultGitUser {
		t.Errorf("username %q", got)
	}
	if got, _ := Askpass("Password for 'https://x@github.com': ", tok); got != "abc" {
		t.Errorf("password %q", got)
	}
	os.WriteFile(filepath.Join(dir, "username"), []byte("robot\n"), 0o600)
	if got, _ := Askpass("Username for 'https://github.com': ", tok); got != "robot" {
		t.Errorf("username from file %q", got)
	}
}

func TestPVC(t *testing.T) {
	dir := t.TempDir()
	f := fetcher(t)
	s := config.Source{Name: "stdlib", PVC: &config.PVCSource{ClaimName: "store", Path: "go/src"}, Dir: dir}
	tree, err := f.Resolve(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Repo != "store/go/src" || tree.Revision != "" || tree.License != "" {
		t.Errorf("tree %+v", tree)
	}
	s.Dir = filepath.Join(dir, "missing")
	_, err = f.Resolve(context.Background(), s)
	wantFailure(t, err, failure.SourceNotFound, `claim "store"`, `path "go/src"`)
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o644)
	s.Dir = file
	_, err = f.Resolve(context.Background(), s)
	wantFailure(t, err, failure.SourceNotFound, "not a directory")
}

func TestGitHead(t *testing.T) {
	needGit(t)
	dir := t.TempDir()
	gitCmd(t, dir, "init", "-q", "-b", "main")
	if GitHead(dir) != "" {
		t.Error("a repository without commits has no head")
	}
	os.MkdirAll(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "x.go"), []byte("package x\n"), 0o644)
	gitCmd(t, dir, "add", ".")
	gitCmd(t, dir, "commit", "-q", "-m", "x")
	want := gitCmd(t, dir, "rev-parse", "HEAD")
	if got := GitHead(filepath.Join(dir, "sub")); got != want {
		t.Errorf("loose ref: %q, want %q", got, want)
	}
	gitCmd(t, dir, "pack-refs", "--all")
	if got := GitHead(dir); got != want {
		t.Errorf("packed ref: %q, want %q", got, want)
	}
	gitCmd(t, dir, "checkout", "-q", "--detach")
	if got := GitHead(dir); got != want {
		t.Errorf("detached: %q, want %q", got, want)
	}
	if GitHead(t.TempDir()) != "" {
		t.Error("not a work tree")
	}
}

// goProxy writes a file:// module proxy holding example.com/hello@v1.0.0.
func goProxy(t *testing.T) string {
	dir := t.TempDir()
	v := filepath.Join(dir, "example.com", "hello", "@v")
	os.MkdirAll(v, 0o755)
	os.WriteFile(filepath.Join(v, "list"), []byte("v1.0.0\n"), 0o644)
	os.WriteFile(filepath.Join(v, "v1.0.0.info"), []byte(`{"Version":"v1.0.0","Time":"2024-01-01T00:00:00Z"}`), 0o644)
	mod := "module example.com/hello\n\ngo 1.21\n"
	os.WriteFile(filepath.Join(v, "v1.0.0.mod"), []byte(mod), 0o644)
	zf, _ := os.Create(filepath.Join(v, "v1.0.0.zip"))
	zw := zip.NewWriter(zf)
	for name, body := range map[string]string{
		"go.mod":   mod,
		"LICENSE":  "Apache License\nVersion 2.0, January 2004\n",
		"hello.go": "package hello\n\n// Hello returns a greeting for name.\nfunc Hello(name string) string {\n\tif name == \"\" {\n\t\tname = \"world\"\n\t}\n\treturn \"hello, \" + name\n}\n",
	} {
		w, _ := zw.Create("example.com/hello@v1.0.0/" + name)
		w.Write([]byte(body))
	}
	zw.Close()
	zf.Close()
	return "file://" + filepath.ToSlash(dir)
}

func TestModule(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go not installed")
	}
	proxy := goProxy(t)
	f := fetcher(t, "GOPROXY="+proxy, "GOSUMDB=off", "GOTOOLCHAIN=local", "GOFLAGS=", "GOCACHE="+t.TempDir())
	s := config.Source{Name: "hello", Module: &config.ModSource{Path: "example.com/hello", Version: "v1.0.0"}}
	tree, err := f.Resolve(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	wantRoot := filepath.Join(f.StoreRoot, ".work", "ds", config.ModCacheDir, "example.com", "hello@v1.0.0")
	if tree.Root != wantRoot || tree.Module != "example.com/hello" || tree.Revision != "v1.0.0" || tree.License != "Apache-2.0" {
		t.Errorf("tree %+v, want root %s", tree, wantRoot)
	}
	if _, err := os.Stat(filepath.Join(tree.Root, "hello.go")); err != nil {
		t.Error(err)
	}
	// -modcacherw: directories stay writable, so the cache on the store can be removed.
	if fi, err := os.Stat(tree.Root); err == nil && fi.Mode().Perm()&0o200 == 0 {
		t.Error("module cache directory is read-only")
	}
	s.Module.Version = "v9.9.9"
	_, err = f.Resolve(context.Background(), s)
	wantFailure(t, err, failure.SourceFetchFailed, "example.com/hello@v9.9.9")
}
