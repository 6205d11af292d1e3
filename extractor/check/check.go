// Package check measures how many generated snippets are Go.
//
// The training quality gate samples completions from the base model and from
// a trained adapter and asks this package how many parse as Go declarations
// (an adapter that emits only tabs, or prose, scores near zero however low
// its loss) and, for pairs taken from the Go standard library, how many
// type-check in place of the original function (TypeChecker).
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

// Report is the summary printed by `golora-extract check`. The type-check
// fields are set only in type-check mode (ReaderWith with a TypeChecker,
// or a note saying why there is none).
type Report struct {
	Total  int     `json:"total"`
	Parsed int     `json:"parsed"`
	Rate   float64 `json:"rate"`
	// Snippets whose pair could be type-checked (a standard library
	// function found in GOROOT), how many of them type-check, and the rate.
	TypeCheckable   *int     `json:"typeCheckable,omitempty"`
	TypeCheckPassed *int     `json:"typeCheckPassed,omitempty"`
	TypeCheckRate   *float64 `json:"typeCheckRate,omitempty"`
	Note            string   `json:"note,omitempty"`
	Results         []Item   `json:"results,omitempty"`
}

// Item is the outcome for one snippet, in input order (type-check mode).
type Item struct {
	Parsed bool `json:"parsed"`
	TypeResult
}

// snippet is one JSONL line; code wins over output when both are set.
type snippet struct {
	Code   *string `json:"code"`
	Output *string `json:"output"`
	Meta   Meta    `json:"meta"`
}

// Reader counts the snippets of a JSONL stream that parse. Blank lines are
// ignored; a line that is not a JSON object with a code or output string
// counts as a snippet that does not parse, and is reported through bad.
func Reader(r io.Reader, bad func(line int, err error)) (Report, error) {
	return read(r, nil, false, bad)
}

// ReaderWith is Reader in type-check mode: each snippet with a "meta"
// object naming a standard library function is also type-checked in that
// function's place by tc, and every snippet's outcome is listed in
// Results. A nil tc type-checks nothing (note says why).
func ReaderWith(r io.Reader, tc *TypeChecker, note string, bad func(line int, err error)) (Report, error) {
	rep, err := read(r, tc, true, bad)
	rep.Note = note
	return rep, err
}

func read(r io.Reader, tc *TypeChecker, typed bool, bad func(line int, err error)) (Report, error) {
	var rep Report
	checkable, passed := 0, 0
	br := bufio.NewReaderSize(r, 1<<16)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			rep.Total++
			item := Item{TypeResult: TypeResult{Outcome: TypeSkipped}}
			var s snippet
			switch jerr := json.Unmarshal(line, &s); {
			case jerr != nil:
				if bad != nil {
					bad(n, jerr)
				}
				item.Detail = "not a JSON object"
			case s.Code == nil && s.Output == nil:
				if bad != nil {
					bad(n, errors.New(`no "code" or "output" field`))
				}
				item.Detail = `no "code" or "output" field`
			default:
				code := s.Output
				if s.Code != nil {
					code = s.Code
				}
				if Parses(*code) {
					rep.Parsed++
					item.Parsed = true
				}
				if tc != nil {
					item.TypeResult = tc.Check(*code, s.Meta)
				} else {
					item.Detail = "no type checker"
				}
			}
			if item.Outcome != TypeSkipped {
				checkable++
				if item.Outcome == TypeOK {
					passed++
				}
			}
			if typed {
				rep.Results = append(rep.Results, item)
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
	if typed {
		rep.TypeCheckable, rep.TypeCheckPassed = &checkable, &passed
		if checkable > 0 {
			rate := float64(passed) / float64(checkable)
			rep.TypeCheckRate = &rate
		}
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
