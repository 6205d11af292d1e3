package main

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func fixtureDir(t *testing.T) string {
	abs, err := filepath.Abs("../../extract/testdata/rules")
	if err != nil {
		t.Fatal(err)
	}
	return abs
}

func writeConfig(t *testing.T, store, dir, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`{"storeRoot": %q, "outputPath": "datasets/ns/rules", %s
	  "sources": [{"name": "rules", "pvc": {"claimName": "fixtures", "path": "rules"}, "dir": %q}]}`, store, extra, dir)
	f := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestRunExitCodes(t *testing.T) {
	store := t.TempDir()
	termLog := filepath.Join(t.TempDir(), "termination-log")
	env := envOf(map[string]string{"GOLORA_TERMINATION_LOG": termLog})
	var stderr bytes.Buffer

	cfg := writeConfig(t, store, fixtureDir(t), "")
	if code := Main([]string{"run", "--config", cfg}, nil, io.Discard, &stderr, env); code != 0 {
		t.Fatalf("run: exit %d\n%s", code, stderr.String())
	}
	if _, err := os.Stat(filepath.Join(store, "datasets", "ns", "rules", "train.jsonl")); err != nil {
		t.Error(err)
	}
	if !strings.Contains(stderr.String(), "parsing:") || !strings.Contains(stderr.String(), "wrote 12 pairs") {
		t.Errorf("progress log:\n%s", stderr.String())
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"bad config", []string{"run", "--config", writeConfig(t, store, fixtureDir(t), `"bogus": 1,`)}, 2, "unknown field"},
		{"missing source", []string{"run", "--config", writeConfig(t, store, filepath.Join(store, "nope"), "")}, 3, `claim "fixtures"`},
		{"empty", []string{"run", "--config", writeConfig(t, store, fixtureDir(t), `"filters": {"minLines": 500},`)}, 4, "no pairs"},
		{"no config", []string{"run"}, 2, "GOLORA_CONFIG"},
		{"bad git url", []string{"run", "--config", writeGitConfig(t, store, "ext::sh -c id")}, 2, "transport helper"},
	} {
		os.Remove(termLog)
		stderr.Reset()
		if code := Main(tc.args, nil, io.Discard, &stderr, env); code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s", tc.name, code, tc.code, stderr.String())
		}
		if b, _ := os.ReadFile(termLog); !strings.Contains(string(b), tc.msg) {
			t.Errorf("%s: termination log %q lacks %q", tc.name, b, tc.msg)
		}
	}
	if code := Main([]string{"frobnicate"}, nil, io.Discard, io.Discard, env); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
}

func writeGitConfig(t *testing.T, store, url string) string {
	f := filepath.Join(t.TempDir(), "config.json")
	doc, _ := json.Marshal(map[string]any{
		"storeRoot": store, "outputPath": "datasets/ns/g",
		"sources": []any{map[string]any{"name": "g", "git": map[string]any{"url": url, "revision": "main"}}},
	})
	os.WriteFile(f, doc, 0o644)
	return f
}

func TestCheck(t *testing.T) {
	in := `{"code": "func f() {}"}` + "\n" + `{"output": "\t\t\t"}` + "\n"
	var out bytes.Buffer
	if code := Main([]string{"check"}, strings.NewReader(in), &out, io.Discard, os.Getenv); code != 0 {
		t.Fatalf("exit %d", code)
	}
	if strings.TrimSpace(out.String()) != `{"total":2,"parsed":1,"rate":0.5}` {
		t.Errorf("check output %q", out.String())
	}
	f := filepath.Join(t.TempDir(), "s.jsonl")
	os.WriteFile(f, []byte(in), 0o644)
	out.Reset()
	if code := Main([]string{"check", f}, nil, &out, io.Discard, os.Getenv); code != 0 || !strings.Contains(out.String(), `"parsed":1`) {
		t.Errorf("check FILE: exit %d, %q", code, out.String())
	}
	if code := Main([]string{"check", filepath.Join(t.TempDir(), "missing")}, nil, &out, io.Discard, os.Getenv); code != 1 {
		t.Errorf("missing file: exit %d", code)
	}
}

func TestCheckTypecheck(t *testing.T) {
	in := `{"code": "func ToUpper(s string) string {\n\treturn 1\n}", "meta": {"repo": "go-src/src", "path": "strings/strings.go", "package": "strings", "name": "ToUpper"}}` + "\n" +
		`{"code": "func f() {}"}` + "\n"
	var out, stderr bytes.Buffer
	if code := Main([]string{"check", "--typecheck"}, strings.NewReader(in), &out, &stderr, os.Getenv); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var rep struct {
		Total, Parsed, TypeCheckable, TypeCheckPassed int
		TypeCheckRate                                 *float64
		Note                                          string
		Results                                       []struct{ TypeCheck, Detail string }
	}
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Note != "" {
		t.Skipf("no GOROOT here: %s", rep.Note)
	}
	if rep.Total != 2 || rep.Parsed != 2 || rep.TypeCheckable != 1 || rep.TypeCheckPassed != 0 ||
		rep.TypeCheckRate == nil || *rep.TypeCheckRate != 0 || len(rep.Results) != 2 ||
		rep.Results[0].TypeCheck != "error" || rep.Results[1].TypeCheck != "skipped" {
		t.Errorf("check --typecheck: %s", out.String())
	}
	out.Reset()
	nowhere := filepath.Join(t.TempDir(), "go")
	if code := Main([]string{"check", "--typecheck", "--goroot", nowhere}, strings.NewReader(in), &out, io.Discard, os.Getenv); code != 0 ||
		!strings.Contains(out.String(), `is not a GOROOT`) || !strings.Contains(out.String(), `"typeCheckable":0`) {
		t.Errorf("check --typecheck without a GOROOT: exit %d, %s", code, out.String())
	}
	if code := Main([]string{"check", "--bogus"}, strings.NewReader(in), &out, io.Discard, os.Getenv); code != 2 {
		t.Errorf("unknown flag: exit %d", code)
	}
}

// TestBinary builds golora-extract and runs it as a Job would: config from
// GOLORA_CONFIG, status patched on a TLS API server, askpass mode.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the binary build")
	}
	bin := filepath.Join(t.TempDir(), "golora-extract")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	// Askpass mode answers git's prompts from the credentials file.
	tok := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tok, []byte("s3cret\n"), 0o600)
	cmd := exec.Command(bin, "Password for 'https://x-access-token@example.com': ")
	cmd.Env = append(os.Environ(), "GOLORA_ASKPASS_FILE="+tok)
	if out, err := cmd.Output(); err != nil || string(out) != "s3cret\n" {
		t.Errorf("askpass: %q %v", out, err)
	}

	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, r.Method+" "+r.URL.Path+" "+string(b))
		mu.Unlock()
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	sa := t.TempDir()
	os.WriteFile(filepath.Join(sa, "ca.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644)
	os.WriteFile(filepath.Join(sa, "token"), []byte("sa-token"), 0o600)
	u, _ := url.Parse(srv.URL)
	host, port, _ := net.SplitHostPort(u.Host)

	store := t.TempDir()
	target := `"statusTarget": {"group": "golora.dev", "version": "v1alpha1", "plural": "godatasets", "namespace": "ns", "name": "rules"},`
	cfg, _ := os.ReadFile(writeConfig(t, store, fixtureDir(t), target))
	env := append(os.Environ(), "GOLORA_CONFIG="+string(cfg), "KUBERNETES_SERVICE_HOST="+host,
		"KUBERNETES_SERVICE_PORT="+port, "GOLORA_SERVICEACCOUNT_DIR="+sa)
	cmd = exec.Command(bin, "run")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run: %v\n%s", err, out)
	}
	mu.Lock()
	got := strings.Join(bodies, "\n")
	mu.Unlock()
	const path = "PATCH /apis/golora.dev/v1alpha1/namespaces/ns/godatasets/rules/status "
	if !strings.Contains(got, path+`{"status":{"progress":{"stage":"`) ||
		!strings.Contains(got, path+`{"status":{"result":{`) || !strings.Contains(got, `"pairsKept":12`) {
		t.Errorf("patches:\n%s", got)
	}

	// An invalid config is reported to its statusTarget when it names one.
	cfg, _ = os.ReadFile(writeConfig(t, store, fixtureDir(t), target+` "fromTheFuture": true,`))
	cmd = exec.Command(bin, "run")
	cmd.Env = append(env, "GOLORA_CONFIG="+string(cfg))
	if err := cmd.Run(); err == nil {
		t.Error("unknown field: want failure")
	}
	mu.Lock()
	last := bodies[len(bodies)-1]
	mu.Unlock()
	if !strings.Contains(last, `"reason":"InvalidConfig"`) || !strings.Contains(last, "fromTheFuture") {
		t.Errorf("invalid config patch %s", last)
	}

	// A failure is patched too, and the exit code says which.
	cfg, _ = os.ReadFile(writeConfig(t, store, filepath.Join(store, "missing"), target))
	cmd = exec.Command(bin, "run")
	cmd.Env = append(env, "GOLORA_CONFIG="+string(cfg), "GOLORA_TERMINATION_LOG="+filepath.Join(t.TempDir(), "tl"))
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Errorf("missing source: %v, want exit 3", err)
	}
	mu.Lock()
	last = bodies[len(bodies)-1]
	mu.Unlock()
	if !strings.Contains(last, `"failure":{"message":"source \"rules\": claim \"fixtures\"`) || !strings.Contains(last, `"reason":"SourceNotFound"`) {
		t.Errorf("failure patch %s", last)
	}
}
