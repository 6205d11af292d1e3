// Package config reads and checks the one JSON document that drives a run.
//
// The operator renders it from a GoDataset spec; the same fields work from the
// command line. Unknown fields are an error so that a typo never silently
// falls back to a default.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"golora.dev/extractor/failure"
)

// Config is a whole run: where to read from, what to keep, where to write.
type Config struct {
	StoreRoot    string        `json:"storeRoot"`
	OutputPath   string        `json:"outputPath"`
	WorkPath     string        `json:"workPath,omitempty"`
	Sources      []Source      `json:"sources"`
	Filters      Filters       `json:"filters"`
	Template     string        `json:"template"`
	Split        Split         `json:"split"`
	MaxPairs     int           `json:"maxPairs"`
	StatusTarget *StatusTarget `json:"statusTarget,omitempty"`
}

// Source is one tree of Go code; exactly one of PVC, Git and Module is set.
type Source struct {
	Name   string     `json:"name"`
	PVC    *PVCSource `json:"pvc,omitempty"`
	Dir    string     `json:"dir,omitempty"` // absolute mount point of a pvc source
	Git    *GitSource `json:"git,omitempty"`
	Module *ModSource `json:"module,omitempty"`
}

// PVCSource names a directory on a claim; the operator mounts it at Source.Dir.
type PVCSource struct {
	ClaimName string `json:"claimName"`
	Path      string `json:"path"`
}

// GitSource is a remote repository fetched at exactly one revision.
type GitSource struct {
	URL             string `json:"url"`
	Revision        string `json:"revision"`
	CredentialsFile string `json:"credentialsFile,omitempty"`
}

// ModSource is a Go module downloaded through GOPROXY.
type ModSource struct {
	Path    string `json:"path"`
	Version string `json:"version"`
}

// Filters decide which functions become pairs.
type Filters struct {
	MinLines            int     `json:"minLines"`
	MinDocWords         int     `json:"minDocWords"`
	MaxOutputBytes      int     `json:"maxOutputBytes"`
	ExportedOnly        bool    `json:"exportedOnly"`
	IncludeTests        bool    `json:"includeTests"`
	IncludeTestdata     bool    `json:"includeTestdata"`
	IncludeVendor       bool    `json:"includeVendor"`
	IncludeGenerated    bool    `json:"includeGenerated"`
	IncludeBuildIgnored bool    `json:"includeBuildIgnored"`
	NearDedup           bool    `json:"nearDedup"`
	NearDedupThreshold  float64 `json:"nearDedupThreshold"`
}

// Split is the deterministic train/eval split.
type Split struct {
	EvalFraction float64 `json:"evalFraction"`
	Seed         int64   `json:"seed"`
}

// StatusTarget is the custom resource whose status subresource the run patches.
type StatusTarget struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Plural    string `json:"plural"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

// Templates are the instruction templates a config may name.
var Templates = []string{"doc", "context"}

// ModCacheDir is the directory under the work path that holds the module
// cache; no source may use it as its name.
const ModCacheDir = "modcache"

// Default returns a Config with every optional field at its default.
func Default() Config {
	return Config{
		Filters: Filters{
			MinLines:           5,
			MinDocWords:        3,
			MaxOutputBytes:     16384,
			NearDedup:          true,
			NearDedupThreshold: 0.85,
		},
		Template: "doc",
		Split:    Split{EvalFraction: 0.05, Seed: 42},
	}
}

// EnvVar is the environment variable read when no --config file is given.
const EnvVar = "GOLORA_CONFIG"

// Load reads the config from file, or from $GOLORA_CONFIG when file is "",
// and validates it. Errors are *failure.Error with reason InvalidConfig or
// InvalidSource. With an error, the returned config (when not nil) is only
// good for its StatusTarget, so that the failure can still be reported.
func Load(file string, getenv func(string) string) (*Config, error) {
	var data []byte
	switch {
	case file == "-":
		b, err := io.ReadAll(os.Stdin)
		if err != nil {
			return nil, failure.New(failure.InvalidConfig, "reading config from stdin: %v", err)
		}
		data = b
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, failure.New(failure.InvalidConfig, "reading config: %v", err)
		}
		data = b
	default:
		s := getenv(EnvVar)
		if strings.TrimSpace(s) == "" {
			return nil, failure.New(failure.InvalidConfig, "no config: pass --config FILE or set %s", EnvVar)
		}
		data = []byte(s)
	}
	return Parse(data)
}

// Parse decodes one JSON document over the defaults and validates it.
func Parse(data []byte) (*Config, error) {
	c := Default()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return reportable(data), failure.New(failure.InvalidConfig, "config is not valid: %v", err)
	}
	if dec.More() {
		return reportable(data), failure.New(failure.InvalidConfig, "config must be one JSON document")
	}
	if err := c.Validate(); err != nil {
		if c.StatusTarget != nil && c.StatusTarget.validate() != nil {
			c.StatusTarget = nil
		}
		return &c, err
	}
	return &c, nil
}

// reportable salvages the statusTarget of a document that does not decode
// (an unknown field from a newer operator, say), so the failure still reaches
// the resource's status. It returns nil when there is none to salvage.
func reportable(data []byte) *Config {
	var doc struct {
		StatusTarget *StatusTarget `json:"statusTarget"`
	}
	if json.Unmarshal(data, &doc) != nil || doc.StatusTarget == nil || doc.StatusTarget.validate() != nil {
		return nil
	}
	return &Config{StatusTarget: doc.StatusTarget}
}

var (
	sourceName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	k8sName    = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// Validate checks the config and fills derived defaults (WorkPath).
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return failure.New(failure.InvalidConfig, format, args...)
	}
	if c.StatusTarget != nil {
		if err := c.StatusTarget.validate(); err != nil {
			return err
		}
	}
	if c.StoreRoot == "" {
		return bad("storeRoot is required")
	}
	if c.OutputPath == "" {
		return bad("outputPath is required")
	}
	if err := checkRelative("outputPath", c.OutputPath); err != nil {
		return err
	}
	c.OutputPath = path.Clean(c.OutputPath)
	if c.WorkPath == "" {
		c.WorkPath = c.OutputPath + ".src"
	}
	if err := checkRelative("workPath", c.WorkPath); err != nil {
		return err
	}
	c.WorkPath = path.Clean(c.WorkPath)
	if within(c.WorkPath, c.OutputPath) || within(c.OutputPath, c.WorkPath) {
		return bad("workPath %q and outputPath %q must not contain one another", c.WorkPath, c.OutputPath)
	}
	if len(c.Sources) == 0 {
		return bad("at least one source is required")
	}
	seen := map[string]bool{}
	for i, s := range c.Sources {
		if !sourceName.MatchString(s.Name) {
			return bad("sources[%d].name %q must be 1-63 letters, digits, '.', '_' or '-'", i, s.Name)
		}
		if s.Name == ModCacheDir {
			return bad("sources[%d].name %q is reserved", i, s.Name)
		}
		if seen[s.Name] {
			return bad("source name %q is used twice", s.Name)
		}
		seen[s.Name] = true
		n := 0
		if s.PVC != nil {
			n++
		}
		if s.Git != nil {
			n++
		}
		if s.Module != nil {
			n++
		}
		if n != 1 {
			return bad("source %q needs exactly one of pvc, git or module", s.Name)
		}
		if err := s.validate(); err != nil {
			return err
		}
	}
	f := c.Filters
	switch {
	case f.MinLines < 0:
		return bad("filters.minLines must be >= 0")
	case f.MinDocWords < 0:
		return bad("filters.minDocWords must be >= 0")
	case f.MaxOutputBytes < 0:
		return bad("filters.maxOutputBytes must be >= 0 (0 = no limit)")
	case !(f.NearDedupThreshold > 0 && f.NearDedupThreshold <= 1):
		return bad("filters.nearDedupThreshold must be in (0, 1]")
	}
	if !validTemplate(c.Template) {
		return bad("template %q is not one of %s", c.Template, strings.Join(Templates, ", "))
	}
	if !(c.Split.EvalFraction >= 0 && c.Split.EvalFraction < 1) {
		return bad("split.evalFraction must be in [0, 1)")
	}
	if c.MaxPairs < 0 {
		return bad("maxPairs must be >= 0 (0 = no limit)")
	}
	return nil
}

func (t *StatusTarget) validate() error {
	for _, kv := range [][2]string{{"group", t.Group}, {"version", t.Version}, {"plural", t.Plural},
		{"namespace", t.Namespace}, {"name", t.Name}} {
		if !k8sName.MatchString(kv[1]) {
			return failure.New(failure.InvalidConfig, "statusTarget.%s %q is not a valid Kubernetes name", kv[0], kv[1])
		}
	}
	return nil
}

func (s *Source) validate() error {
	bad := func(format string, args ...any) error {
		return failure.New(failure.InvalidSource, "source %q: "+format, append([]any{s.Name}, args...)...)
	}
	switch {
	case s.PVC != nil:
		if s.Dir == "" || !filepath.IsAbs(s.Dir) {
			return failure.New(failure.InvalidConfig,
				"source %q: pvc sources need the absolute mount directory in \"dir\"", s.Name)
		}
	case s.Git != nil:
		if err := CheckGitURL(s.Git.URL); err != nil {
			return bad("%v", err)
		}
		if err := checkArg("git revision", s.Git.Revision); err != nil {
			return bad("%v", err)
		}
	case s.Module != nil:
		if err := checkArg("module path", s.Module.Path); err != nil {
			return bad("%v", err)
		}
		if err := checkArg("module version", s.Module.Version); err != nil {
			return bad("%v", err)
		}
		if strings.ContainsAny(s.Module.Path+s.Module.Version, "@") {
			return bad("module path and version must not contain '@'")
		}
	}
	return nil
}

// checkArg refuses values that a command could mistake for an option or that
// hold whitespace or control characters; they are never valid refs or paths.
func checkArg(what, v string) error {
	if v == "" {
		return fmt.Errorf("%s is required", what)
	}
	if strings.HasPrefix(v, "-") {
		return fmt.Errorf("%s %q must not begin with '-'", what, v)
	}
	for _, r := range v {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%s %q must not contain spaces or control characters", what, v)
		}
	}
	return nil
}

var scpLike = regexp.MustCompile(`^[A-Za-z0-9._~][A-Za-z0-9._~-]*@[A-Za-z0-9][A-Za-z0-9.-]*:[^\s]+$`)

// CheckGitURL accepts only remote transports: https://, http://, ssh:// and
// scp-like user@host:path. Everything else (file://, ext::, fd::, local paths,
// anything git could read as an option) is refused, because those make git
// read local files or run programs.
func CheckGitURL(u string) error {
	if u == "" {
		return fmt.Errorf("git url is required")
	}
	if strings.HasPrefix(u, "-") {
		return fmt.Errorf("git url %q must not begin with '-'", u)
	}
	if strings.Contains(u, "::") {
		return fmt.Errorf("git url %q uses a transport helper (<transport>::<address>), which is not allowed", u)
	}
	for _, r := range u {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("git url %q contains control characters", u)
		}
	}
	lower := strings.ToLower(u)
	for _, scheme := range []string{"https://", "http://", "ssh://"} {
		if strings.HasPrefix(lower, scheme) {
			rest := u[len(scheme):]
			host := rest
			if i := strings.IndexAny(rest, "/?#"); i >= 0 {
				host = rest[:i]
			}
			if at := strings.LastIndex(host, "@"); at >= 0 {
				host = host[at+1:]
			}
			if host == "" || strings.HasPrefix(host, "-") {
				return fmt.Errorf("git url %q has no valid host", u)
			}
			return nil
		}
	}
	if !strings.Contains(u, "://") && scpLike.MatchString(u) {
		return nil
	}
	return fmt.Errorf("git url %q is not an https://, http://, ssh:// or user@host:path remote", u)
}

func checkRelative(field, p string) error {
	if path.IsAbs(p) || filepath.IsAbs(p) {
		return failure.New(failure.InvalidConfig, "%s %q must be relative to storeRoot", field, p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return failure.New(failure.InvalidConfig, "%s %q must not contain '..'", field, p)
		}
	}
	if c := path.Clean(p); c == "." {
		return failure.New(failure.InvalidConfig, "%s %q must name a directory below storeRoot", field, p)
	}
	return nil
}

// within reports whether p is dir or below it (slash-separated, cleaned).
func within(p, dir string) bool {
	return p == dir || strings.HasPrefix(p, dir+"/")
}

func validTemplate(t string) bool {
	for _, v := range Templates {
		if t == v {
			return true
		}
	}
	return false
}

// Describe is a one-line summary of a source, for messages and metadata:
// the git URL, the module path, or claim/path.
func (s *Source) Describe() string {
	switch {
	case s.Git != nil:
		return s.Git.URL
	case s.Module != nil:
		return s.Module.Path
	case s.PVC != nil:
		if s.PVC.Path == "" {
			return s.PVC.ClaimName
		}
		return s.PVC.ClaimName + "/" + strings.TrimPrefix(s.PVC.Path, "/")
	}
	return ""
}
