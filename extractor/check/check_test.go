package check

import (
	"strings"
	"testing"
)

func TestParses(t *testing.T) {
	for _, tc := range []struct {
		code string
		want bool
	}{
		{"func f() int {\n\treturn 1\n}", true},
		{"```go\nfunc f() int {\n\treturn 1\n}\n```", true},
		{"```\nfunc (s *Set[T]) Add(v T) { s.m[v] = struct{}{} }\n```\n", true},
		{"type T struct{}\n\nfunc (T) M() {}", true},
		{"package main\n\nfunc main() {}", true},
		{"\t\t\t\t\t\t", false},
		{"", false},
		{"This function returns the sum.", false},
		{"func f() {", false},
		{"x := 1", false},
	} {
		if got := Parses(tc.code); got != tc.want {
			t.Errorf("Parses(%q) = %v, want %v", tc.code, got, tc.want)
		}
	}
}

func TestReader(t *testing.T) {
	in := `{"code": "func f() {}"}
{"output": "` + "```go\\nfunc g() int { return 1 }\\n```" + `"}
{"code": "\t\t\t"}

{"code": "func h() {}", "output": "garbage"}
not json
{"other": 1}
`
	var bad []int
	rep, err := Reader(strings.NewReader(in), func(line int, err error) { bad = append(bad, line) })
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 6 || rep.Parsed != 3 || rep.Rate != 0.5 {
		t.Errorf("report %+v, want 6 total, 3 parsed, rate 0.5", rep)
	}
	if len(bad) != 2 || bad[0] != 6 || bad[1] != 7 {
		t.Errorf("bad lines %v, want [6 7]", bad)
	}
	rep, _ = Reader(strings.NewReader(""), nil)
	if rep.Total != 0 || rep.Rate != 0 {
		t.Errorf("empty input: %+v", rep)
	}
	// A last line without a newline still counts.
	rep, _ = Reader(strings.NewReader(`{"code": "func f() {}"}`), nil)
	if rep.Total != 1 || rep.Parsed != 1 {
		t.Errorf("unterminated last line: %+v", rep)
	}
}
