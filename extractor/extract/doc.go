package extract

import (
	"go/ast"
	"strings"
)

// CleanDoc returns the text of a doc comment without the tool directives
// that (*ast.CommentGroup).Text keeps. Text already drops "//go:..." style
// directives, "//line", "//export" and "//extern", but keeps "//nolint",
// "// nolint:...", "// +build ..." and marker comments such as
// "// +k8s:deepcopy-gen=true" or "// +kubebuilder:...". Those are
// instructions to tools, not documentation; a model trained on them learns
// to emit them. The result has no leading or trailing blank lines and no
// runs of blank lines; it is "" when the comment held only directives.
func CleanDoc(g *ast.CommentGroup) string {
	if g == nil {
		return ""
	}
	lines := strings.Split(g.Text(), "\n")
	out := make([]string, 0, len(lines))
	blank := true // drop leading blank lines and runs of them
	for _, l := range lines {
		if IsDirectiveLine(l) {
			continue
		}
		if strings.TrimSpace(l) == "" {
			if !blank {
				out = append(out, "")
			}
			blank = true
			continue
		}
		out = append(out, strings.TrimRight(l, " \t"))
		blank = false
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	dedent(out)
	return strings.Join(out, "\n")
}

// dedent removes the spaces that begin every non-blank line, as block
// comments ("/* text */") leave them.
func dedent(lines []string) {
	n := -1
	for _, l := range lines {
		if l == "" {
			continue
		}
		k := len(l) - len(strings.TrimLeft(l, " "))
		if n < 0 || k < n {
			n = k
		}
	}
	if n <= 0 {
		return
	}
	for i, l := range lines {
		if l != "" {
			lines[i] = l[n:]
		}
	}
}

// IsDirectiveLine reports whether one line of CommentGroup.Text output is a
// tool directive rather than prose:
//
//   - nolint in any form ("nolint", "nolint:errcheck", "nolint // why")
//   - "lint:ignore ..." (staticcheck)
//   - markers: "+build linux", "+k8s:openapi-gen=true", "+kubebuilder:...",
//     "+genclient", "+optional" (a '+' then a lower-case word)
//   - "word:word" directives written with a space after "//", such as
//     "// go:generate ..." (the form Go itself recognises is "//[a-z0-9]+:[a-z0-9]")
//
// Lines indented as code blocks are kept: they are examples in the docs.
func IsDirectiveLine(line string) bool {
	if strings.HasPrefix(line, "\t") || strings.HasPrefix(line, "  ") {
		return false
	}
	t := strings.TrimSpace(line)
	if t == "" {
		return false
	}
	if rest, ok := strings.CutPrefix(t, "nolint"); ok {
		return rest == "" || !isWordByte(rest[0])
	}
	if strings.HasPrefix(t, "lint:") {
		return true
	}
	if t[0] == '+' {
		return len(t) > 1 && 'a' <= t[1] && t[1] <= 'z' && isMarker(t[1:])
	}
	return isColonDirective(t)
}

// isMarker reports whether s (after the '+') is a marker: a word of letters,
// digits, '-', '_' or '.' that ends the line or is followed by ':', '=',
// or a space (as in "+build linux,amd64").
func isMarker(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case isWordByte(c) || c == '-' || c == '.':
		case c == ':' || c == '=' || c == ' ':
			return i > 0
		default:
			return false
		}
	}
	return true
}

// isColonDirective matches "[a-z0-9]+:[a-z0-9]" at the start of s, the
// shape of Go's own directive comments.
func isColonDirective(s string) bool {
	colon := strings.IndexByte(s, ':')
	if colon <= 0 || colon+1 >= len(s) {
		return false
	}
	for i := 0; i <= colon+1; i++ {
		if i == colon {
			continue
		}
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func isWordByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_'
}
