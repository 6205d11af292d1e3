package report

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golora.dev/extractor/config"
)

type patch struct {
	path, contentType, auth string
	body                    map[string]any
}

type apiServer struct {
	*httptest.Server
	mu      sync.Mutex
	patches []patch
	fail    int // answer 500 to this many requests first
}

func newAPIServer(t *testing.T) *apiServer {
	s := &apiServer{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.fail > 0 {
			s.fail--
			http.Error(w, "etcd is sad", http.StatusInternalServerError)
			return
		}
		if r.Method != http.MethodPatch {
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var body map[string]any
		if err := json.Unmarshal(b, &body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.patches = append(s.patches, patch{r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), body})
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *apiServer) got() []patch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]patch(nil), s.patches...)
}

// env returns a getenv for a pod whose service account dir holds the test
// server's CA and a token.
func (s *apiServer) env(t *testing.T) func(string) string {
	sa := t.TempDir()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	os.WriteFile(filepath.Join(sa, "ca.crt"), ca, 0o644)
	os.WriteFile(filepath.Join(sa, "token"), []byte("s3cret-token\n"), 0o600)
	u, _ := url.Parse(s.URL)
	host, port, _ := net.SplitHostPort(u.Host)
	vars := map[string]string{"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port, ServiceAccountDirEnv: sa}
	return func(k string) string { return vars[k] }
}

var target = &config.StatusTarget{Group: "golora.dev", Version: "v1alpha1", Plural: "godatasets", Namespace: "team-a", Name: "stdlib"}

func TestReporterPatchesStatus(t *testing.T) {
	s := newAPIServer(t)
	r, err := New(target, s.env(t), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	r.Interval = 200 * time.Millisecond
	for i := range 50 { // a burst is coalesced into a few patches
		r.Progress(Progress{Stage: "parsing", FilesSeen: 100, FilesParsed: i, Pairs: i * 2})
	}
	time.Sleep(350 * time.Millisecond)
	if err := r.Result(map[string]any{"pairsKept": 7, "digest": "sha256:00"}); err != nil {
		t.Fatal(err)
	}
	ps := s.got()
	if len(ps) < 2 || len(ps) > 3 {
		t.Fatalf("%d patches, want first progress, the latest progress, then the result: %+v", len(ps), ps)
	}
	for _, p := range ps {
		if p.path != "/apis/golora.dev/v1alpha1/namespaces/team-a/godatasets/stdlib/status" {
			t.Errorf("path %s", p.path)
		}
		if p.contentType != "application/merge-patch+json" || p.auth != "Bearer s3cret-token" {
			t.Errorf("headers %q %q", p.contentType, p.auth)
		}
	}
	first := ps[0].body["status"].(map[string]any)["progress"].(map[string]any)
	if first["stage"] != "parsing" || first["filesSeen"] != 100.0 {
		t.Errorf("progress body %v", first)
	}
	last := ps[len(ps)-2].body["status"].(map[string]any)["progress"].(map[string]any)
	if last["filesParsed"] != 49.0 {
		t.Errorf("latest progress not sent: %v", last)
	}
	res := ps[len(ps)-1].body["status"].(map[string]any)["result"].(map[string]any)
	if res["pairsKept"] != 7.0 {
		t.Errorf("result body %v", res)
	}
	if v, ok := res["failure"]; !ok || v != nil {
		t.Errorf("result should clear failure with null: %v", res)
	}
}

func TestReporterFailureAndRetries(t *testing.T) {
	s := newAPIServer(t)
	s.fail = 2
	r, err := New(target, s.env(t), t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	r.Backoff = time.Millisecond
	if err := r.Failure("SourceFetchFailed", "git says no"); err != nil {
		t.Fatalf("failure after retries: %v", err)
	}
	ps := s.got()
	if len(ps) != 1 {
		t.Fatalf("%d patches", len(ps))
	}
	f := ps[0].body["status"].(map[string]any)["result"].(map[string]any)["failure"].(map[string]any)
	if f["reason"] != "SourceFetchFailed" || f["message"] != "git says no" {
		t.Errorf("failure body %v", f)
	}

	s.fail = 100 // never recovers: the error is returned, not fatal
	if err := r.Failure("X", "y"); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("persistent 500: %v", err)
	}
}

func TestReporterSetup(t *testing.T) {
	if r, err := New(nil, os.Getenv, nil); r != nil || err != nil {
		t.Errorf("nil target: %v %v", r, err)
	}
	var nilRep *Reporter // methods on nil do nothing
	nilRep.Progress(Progress{})
	if nilRep.Result(1) != nil || nilRep.Failure("a", "b") != nil {
		t.Error("nil reporter reported")
	}
	nilRep.Close()
	if _, err := New(target, func(string) string { return "" }, nil); err == nil {
		t.Error("no KUBERNETES_SERVICE_HOST: want error")
	}
	sa := t.TempDir()
	os.WriteFile(filepath.Join(sa, "ca.crt"), []byte("x"), 0o644)
	env := map[string]string{"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "6443", ServiceAccountDirEnv: sa}
	if _, err := New(target, func(k string) string { return env[k] }, nil); err == nil {
		t.Error("bad CA: want error")
	}
	s := newAPIServer(t)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw})
	os.WriteFile(filepath.Join(sa, "ca.crt"), ca, 0o644)
	r, err := New(target, func(k string) string { return env[k] }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.URL(), "https://[fd00::1]:6443/apis/") {
		t.Errorf("IPv6 host not bracketed: %s", r.URL())
	}
}

func TestTerminationLog(t *testing.T) {
	f := filepath.Join(t.TempDir(), "termination-log")
	WriteTerminationLog(func(k string) string {
		if k == TerminationLogEnv {
			return f
		}
		return ""
	}, "source \"k8s\": clone failed")
	b, _ := os.ReadFile(f)
	if string(b) != "source \"k8s\": clone failed" {
		t.Errorf("termination log %q", b)
	}
	// Unwritable: ignored.
	WriteTerminationLog(func(string) string { return "/nonexistent/dir/log" }, "x")
}
