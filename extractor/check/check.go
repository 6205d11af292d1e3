// Package check measures how many generated snippets are Go.
//
// The training quality gate samples completions from a trained adapter and
// asks this package how many parse as Go declarations: an adapter that emits
// only tabs, or prose, scores near zero however low its loss.
package check

import (
	"bufio"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"strings"
)

// Report is the summary printed by `golora-extract check`.
type Report struct {
	Total  int     `json:"total"`
	Parsed int     `json:"parsed"`
	Rate   float64 `json:"rate"`
}

// snippet is one JSONL line; code wins over output when both are set.
type snippet struct {
	Code   *string `json:"code"`
	Output *string `json:"output"`
}

// Reader counts the snippets of a JSONL stream that parse. Blank lines are
// ignored; a line that is not a JSON object with a code or output string
// counts as a snippet that does not parse, and is reported through bad.
func Reader(r io.Reader, bad func(line int, err error)) (Report, error) {
	var rep Report
	br := bufio.NewReaderSize(r, 1<<16)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			rep.Total++
			var s snippet
			switch jerr := json.Unmarshal(line, &s); {
			case jerr != nil:
				if bad != nil {
					bad(n, jerr)
				}
			case s.Code == nil && s.Output == nil:
				if bad != nil {
					bad(n, errors.New(`no "code" or "output" field`))
				}
			default:
				code := s.Output
				if s.Code != nil {
					code = s.Code
				}
				if Parses(*code) {
					rep.Parsed++
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return rep, err
		}
	}
	if rep.Total > 0 {
		rep.Rate = float64(rep.Parsed) / float64(rep.Total)
	}
	return rep, nil
}

// Parses reports whether code, with an optional ``` fence around it, is one
// or more Go top-level declarations (or a whole file with its own package
// clause).
func Parses(code string) bool {
	code = Unfence(code)
	if strings.TrimSpace(code) == "" {
		return false
	}
	const mode = parser.SkipObjectResolution
	if f, err := parser.ParseFile(token.NewFileSet(), "", "package p\n"+code, mode); err == nil && len(f.Decls) > 0 {
		return true
	}
	f, err := parser.ParseFile(token.NewFileSet(), "", code, mode)
	return err == nil && len(f.Decls) > 0
}

// Unfence returns the code inside a Markdown fence (```go ... ```), or code
// itself when it is not fenced.
func Unfence(code string) string {
	t := strings.TrimSpace(code)
	if !strings.HasPrefix(t, "```") {
		return code
	}
	nl := strings.IndexByte(t, '\n')
	if nl < 0 {
		return ""
	}
	body := t[nl+1:]
	if i := strings.LastIndex(body, "```"); i >= 0 {
		body = body[:i]
	}
	return body
}
