// Package report tells the operator how a run is going by patching the
// status subresource of its custom resource.
//
// It speaks plain HTTPS to the API server with the pod's service account
// (no client library): a JSON merge patch of status.progress while the run
// works, then status.result when it ends. Reporting is best effort: errors
// are logged and retried a few times, never fatal, because the dataset on
// the store and result.json next to it are the record that matters.
package report

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golora.dev/extractor/config"
)

// DefaultServiceAccountDir is where Kubernetes mounts a pod's token and CA.
const DefaultServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// ServiceAccountDirEnv overrides DefaultServiceAccountDir (the local Job
// runner points it at credentials for the local API server).
const ServiceAccountDirEnv = "GOLORA_SERVICEACCOUNT_DIR"

// Progress is the body of status.progress.
type Progress struct {
	Stage       string `json:"stage"`
	FilesSeen   int    `json:"filesSeen"`
	FilesParsed int    `json:"filesParsed"`
	Pairs       int    `json:"pairs"`
}

// Reporter patches one object's status. A nil *Reporter reports nothing, so
// command-line runs without a status target need no special cases.
type Reporter struct {
	url       string
	tokenFile string
	client    *http.Client
	logf      func(format string, args ...any)

	// Interval is the least time between two progress patches.
	Interval time.Duration
	// Attempts is how many times a patch is tried; Backoff is the first
	// wait between tries, doubled after each.
	Attempts int
	Backoff  time.Duration

	mu       sync.Mutex
	pending  *Progress
	started  bool
	wake     chan struct{}
	done     chan struct{}
	finished chan struct{}
}

// New returns a reporter for target, using the in-cluster service account
// and KUBERNETES_SERVICE_HOST/PORT from getenv. A nil target gives a nil
// reporter.
func New(target *config.StatusTarget, getenv func(string) string, logf func(string, ...any)) (*Reporter, error) {
	if target == nil {
		return nil, nil
	}
	host, port := getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
	if host == "" {
		return nil, errors.New("KUBERNETES_SERVICE_HOST is not set: not running in a cluster")
	}
	if port == "" {
		port = "443"
	}
	saDir := getenv(ServiceAccountDirEnv)
	if saDir == "" {
		saDir = DefaultServiceAccountDir
	}
	pem, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("reading the API server CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("no certificate in %s", filepath.Join(saDir, "ca.crt"))
	}
	// JoinHostPort brackets IPv6 addresses.
	u := "https://" + net.JoinHostPort(strings.Trim(host, "[]"), port) + "/apis/" +
		url.PathEscape(target.Group) + "/" + url.PathEscape(target.Version) + "/namespaces/" +
		url.PathEscape(target.Namespace) + "/" + url.PathEscape(target.Plural) + "/" +
		url.PathEscape(target.Name) + "/status"
	if logf == nil {
		logf = func(string, ...any) {}
	}
	return &Reporter{
		url:       u,
		tokenFile: filepath.Join(saDir, "token"),
		client: &http.Client{
			Timeout: 15 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
				Proxy:           nil, // the API server is reached directly
			},
		},
		logf:     logf,
		Interval: 2 * time.Second,
		Attempts: 4,
		Backoff:  500 * time.Millisecond,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		finished: make(chan struct{}),
	}, nil
}

// URL is the status subresource the reporter patches.
func (r *Reporter) URL() string {
	if r == nil {
		return ""
	}
	return r.url
}

// Progress records the latest progress; it is sent at once if the last
// progress patch is older than Interval, or else when it is. It never blocks
// on the network.
func (r *Reporter) Progress(p Progress) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.pending = &p
	if !r.started {
		r.started = true
		go r.loop()
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *Reporter) loop() {
	defer close(r.finished)
	var last time.Time
	for {
		select {
		case <-r.wake:
		case <-r.done:
			return
		}
		if wait := r.Interval - time.Since(last); wait > 0 {
			select {
			case <-time.After(wait):
			case <-r.done:
				return
			}
		}
		r.mu.Lock()
		p := r.pending
		r.pending = nil
		r.mu.Unlock()
		if p == nil {
			continue
		}
		last = time.Now()
		r.patch(map[string]any{"status": map[string]any{"progress": p}})
	}
}

// Close stops progress reporting; progress not yet sent is dropped, as the
// result supersedes it.
func (r *Reporter) Close() {
	if r == nil {
		return
	}
	r.mu.Lock()
	started := r.started
	r.started = true // no loop starts after Close
	r.mu.Unlock()
	select {
	case <-r.done:
		return
	default:
		close(r.done)
	}
	if started {
		<-r.finished
	}
}

// Result patches status.result with res (any JSON object) and clears a
// failure an earlier attempt may have left there.
func (r *Reporter) Result(res any) error {
	if r == nil {
		return nil
	}
	r.Close()
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	m["failure"] = nil // merge patch: null deletes the field
	return r.patch(map[string]any{"status": map[string]any{"result": m}})
}

// Failure patches status.result.failure.
func (r *Reporter) Failure(reason, message string) error {
	if r == nil {
		return nil
	}
	r.Close()
	return r.patch(map[string]any{"status": map[string]any{"result": map[string]any{
		"failure": map[string]string{"reason": reason, "message": message},
	}}})
}

// patch sends one merge patch, retrying transport errors, 409, 429 and 5xx.
func (r *Reporter) patch(body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return err
	}
	backoff := r.Backoff
	var last error
	for attempt := 1; attempt <= max(1, r.Attempts); attempt++ {
		retry, err := r.try(data)
		if err == nil {
			return nil
		}
		last = err
		r.logf("status patch (attempt %d/%d): %v", attempt, r.Attempts, err)
		if !retry {
			break
		}
		if attempt < r.Attempts {
			time.Sleep(backoff)
			backoff *= 2
		}
	}
	return last
}

func (r *Reporter) try(data []byte) (retry bool, err error) {
	token, err := os.ReadFile(r.tokenFile) // re-read: projected tokens rotate
	if err != nil {
		return false, fmt.Errorf("reading service account token: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, r.url, bytes.NewReader(data))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/merge-patch+json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := r.client.Do(req)
	if err != nil {
		return true, err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 == 2 {
		return false, nil
	}
	err = fmt.Errorf("PATCH %s: %s: %s", r.url, resp.Status, strings.TrimSpace(string(msg)))
	switch {
	case resp.StatusCode == http.StatusConflict, resp.StatusCode == http.StatusTooManyRequests,
		resp.StatusCode >= 500:
		return true, err
	}
	return false, err
}

// TerminationLogEnv names the file the failure message is written to, so
// `kubectl describe` shows it; by default Kubernetes' /dev/termination-log.
const TerminationLogEnv = "GOLORA_TERMINATION_LOG"

// WriteTerminationLog writes msg to the termination log, ignoring errors.
// The default path is only written when it already exists (in a pod), so a
// command-line run does not create files under /dev.
func WriteTerminationLog(getenv func(string) string, msg string) {
	file := getenv(TerminationLogEnv)
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if file == "" {
		file = "/dev/termination-log"
		flags = os.O_WRONLY | os.O_TRUNC
	}
	f, err := os.OpenFile(file, flags, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	if len(msg) > 4096 { // the kubelet reads at most 4096 bytes
		msg = msg[:4096]
	}
	f.WriteString(msg)
}
