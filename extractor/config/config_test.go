package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golora.dev/extractor/failure"
)

const minimal = `{"storeRoot": "/store", "outputPath": "datasets/ns/n",
  "sources": [{"name": "stdlib", "pvc": {"claimName": "store", "path": "go/src"}, "dir": "/mnt/sources/stdlib"}]}`

func TestDefaults(t *testing.T) {
	c, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	if c.Filters != d.Filters || c.Split != d.Split || c.Template != "doc" || c.MaxPairs != 0 {
		t.Errorf("defaults not applied: %+v", c)
	}
	if c.Filters.MinLines != 5 || c.Filters.MinDocWords != 3 || c.Filters.MaxOutputBytes != 16384 ||
		!c.Filters.NearDedup || c.Filters.NearDedupThreshold != 0.85 || c.Split.EvalFraction != 0.05 || c.Split.Seed != 42 {
		t.Errorf("wrong defaults: %+v", c)
	}
	if c.WorkPath != "datasets/ns/n.src" {
		t.Errorf("workPath default %q", c.WorkPath)
	}
	if c.StatusTarget != nil {
		t.Error("statusTarget should be absent")
	}
}

func TestPartialSectionsKeepDefaults(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(minimal, `"sources"`,
		`"filters": {"nearDedup": false, "minLines": 3}, "split": {"seed": 7}, "template": "context", "sources"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Filters.NearDedup || c.Filters.MinLines != 3 || c.Filters.MinDocWords != 3 || c.Filters.NearDedupThreshold != 0.85 {
		t.Errorf("filters %+v", c.Filters)
	}
	if c.Split.Seed != 7 || c.Split.EvalFraction != 0.05 || c.Template != "context" {
		t.Errorf("split %+v template %q", c.Split, c.Template)
	}
}

func TestInvalid(t *testing.T) {
	for _, tc := range []struct {
		name, edit string // edit replaces `"sources"` in minimal
		reason     failure.Reason
		msg        string
	}{
		{"unknown field", `"bogus": 1, "sources"`, failure.InvalidConfig, "unknown field"},
		{"unknown filter", `"filters": {"minLine": 3}, "sources"`, failure.InvalidConfig, "unknown field"},
		{"bad template", `"template": "fancy", "sources"`, failure.InvalidConfig, "template"},
		{"eval fraction", `"split": {"evalFraction": 1.5}, "sources"`, failure.InvalidConfig, "evalFraction"},
		{"threshold", `"filters": {"nearDedupThreshold": 0}, "sources"`, failure.InvalidConfig, "nearDedupThreshold"},
		{"maxPairs", `"maxPairs": -1, "sources"`, failure.InvalidConfig, "maxPairs"},
		{"status target", `"statusTarget": {"group": "golora.dev", "version": "v1alpha1", "plural": "godatasets", "namespace": "NS", "name": "n"}, "sources"`, failure.InvalidConfig, "namespace"},
	} {
		_, err := Parse([]byte(strings.Replace(minimal, `"sources"`, tc.edit, 1)))
		checkErr(t, tc.name, err, tc.reason, tc.msg)
	}
	for _, tc := range []struct {
		name, doc string
		reason    failure.Reason
		msg       string
	}{
		{"no store", `{"outputPath": "a", "sources": []}`, failure.InvalidConfig, "storeRoot"},
		{"absolute output", `{"storeRoot": "/s", "outputPath": "/etc", "sources": []}`, failure.InvalidConfig, "relative"},
		{"dotdot output", `{"storeRoot": "/s", "outputPath": "datasets/../../etc", "sources": []}`, failure.InvalidConfig, ".."},
		{"dot output", `{"storeRoot": "/s", "outputPath": "./", "sources": []}`, failure.InvalidConfig, "below storeRoot"},
		{"work inside output", `{"storeRoot": "/s", "outputPath": "d/x", "workPath": "d/x/src", "sources": []}`, failure.InvalidConfig, "contain"},
		{"no sources", `{"storeRoot": "/s", "outputPath": "d/x", "sources": []}`, failure.InvalidConfig, "at least one source"},
		{"two kinds", `{"storeRoot": "/s", "outputPath": "d/x", "sources": [{"name": "a", "dir": "/x", "pvc": {"claimName": "c"}, "module": {"path": "m", "version": "v1.0.0"}}]}`, failure.InvalidConfig, "exactly one"},
		{"no kind", `{"storeRoot": "/s", "outputPath": "d/x", "sources": [{"name": "a"}]}`, failure.InvalidConfig, "exactly one"},
		{"dup names", `{"storeRoot": "/s", "outputPath": "d/x", "sources": [{"name": "a", "dir": "/x", "pvc": {"claimName": "c"}}, {"name": "a", "dir": "/y", "pvc": {"claimName": "c"}}]}`, failure.InvalidConfig, "twice"},
		{"bad name", `{"storeRoot": "/s", "outputPath": "d/x", "sources": [{"name": "../x", "dir": "/x", "pvc": {"claimName": "c"}}]}`, failure.InvalidConfig, "name"},
		{"pvc without dir", `{"storeRoot": "/s", "outputPath": "d/x", "sources": [{"name": "a", "pvc": {"claimName": "c"}}]}`, failure.InvalidConfig, "dir"},
		{"file url", `{"storeRoot": "/s", "outputPath": "d/x", "sources": [{"name": "a", "git": {"url": "file:///etc", "revision": "main"}}]}`, failure.InvalidSource, "file:///etc"},
		{"option revision", `{"storeRoot": "/s", "outputPath": "d/x", "sources": [{"name": "a", "git": {"url": "https://h/r", "revision": "--upload-pack=x"}}]}`, failure.InvalidSource, "'-'"},
		{"module version", `{"storeRoot": "/s", "outputPath": "d/x", "sources": [{"name": "a", "module": {"path": "m", "version": "-x"}}]}`, failure.InvalidSource, "'-'"},
		{"two docs", minimal + minimal, failure.InvalidConfig, "one JSON document"},
		{"not json", `storeRoot: /s`, failure.InvalidConfig, "not valid"},
	} {
		_, err := Parse([]byte(tc.doc))
		checkErr(t, tc.name, err, tc.reason, tc.msg)
	}
}

func checkErr(t *testing.T, name string, err error, reason failure.Reason, msg string) {
	t.Helper()
	var fe *failure.Error
	if !errors.As(err, &fe) {
		t.Errorf("%s: error %v, want %s", name, err, reason)
		return
	}
	if fe.Reason != reason || !strings.Contains(fe.Message, msg) {
		t.Errorf("%s: %s %q, want %s containing %q", name, fe.Reason, fe.Message, reason, msg)
	}
}

func TestGitURLs(t *testing.T) {
	for _, ok := range []string{
		"https://github.com/kubernetes/kubernetes",
		"http://git.example.com:8080/r.git",
		"ssh://git@github.com/org/repo.git",
		"git@github.com:org/repo.git",
		"HTTPS://example.com/x",
		"https://127.0.0.1:1/repo;touch /tmp/pwned", // odd, but only a URL: git fails to fetch it
		"https://example.com/$(touch /tmp/pwned)",
		"https://example.com/`id`",
	} {
		if err := CheckGitURL(ok); err != nil {
			t.Errorf("CheckGitURL(%q) = %v, want accepted", ok, err)
		}
	}
	for _, bad := range []string{
		"", "file:///etc/passwd", "/srv/git/repo", "./repo", "../repo", "repo",
		"ext::sh -c touch% /tmp/pwned", "fd::17", "-uhelp", "--upload-pack=touch /tmp/pwned",
		"git://example.com/repo", "ftp://example.com/r", "https://", "https://-oProxyCommand=x/r",
		"ssh://-oProxyCommand=touch%20x/r", "-oProxyCommand=x@host:path", "user@host",
		"https://example.com/r\nx", "x@-oProxyCommand.sh:path", "-x@host:path", "transport::https://example.com/r", "C:\\repo",
	} {
		if err := CheckGitURL(bad); err == nil {
			t.Errorf("CheckGitURL(%q) accepted, want refused", bad)
		}
	}
}

func TestLoadFromEnvAndFile(t *testing.T) {
	env := map[string]string{EnvVar: minimal}
	c, err := Load("", func(k string) string { return env[k] })
	if err != nil || c.Sources[0].Name != "stdlib" {
		t.Fatalf("from env: %v", err)
	}
	f := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(f, []byte(minimal), 0o644)
	if _, err := Load(f, func(string) string { return "" }); err != nil {
		t.Fatalf("from file: %v", err)
	}
	_, err = Load("", func(string) string { return "" })
	checkErr(t, "none", err, failure.InvalidConfig, EnvVar)
	_, err = Load(filepath.Join(t.TempDir(), "missing.json"), func(string) string { return "" })
	checkErr(t, "missing file", err, failure.InvalidConfig, "reading config")
}
