package lex

import (
	"strings"
	"testing"
)

func kinds(src string) (string, []Token) {
	lx := New([]byte(src))
	var b strings.Builder
	var toks []Token
	for {
		t := lx.Next()
		if t.Kind == EOF {
			return b.String(), toks
		}
		toks = append(toks, t)
		b.WriteString("IL/()[]{}o"[t.Kind-1 : t.Kind])
	}
}

func TestTokens(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`func f() {}`, "II(){}"},
		{`s := "}{ // not a comment"`, "IooL"},
		{"r := `{\n}` + '}'", "IooLoL"},
		{`x := '\''; y := "\"{"`, "IooLoIooL"},
		{"// c {\n/* { */ x", "//I"},
		{`f(1e+9, 0x1p-2, 0xe+1, .5, 1_000)`, "I(LoLoLoLoLoL)"},
		{`a[b]`, "I[I]"},
		{"héllo wörld", "II"},
		{`"unterminated` + "\nx", "LI"},
	} {
		got, _ := kinds(tc.src)
		got = strings.ReplaceAll(got, "/", "C")
		want := strings.ReplaceAll(tc.want, "/", "C")
		if got != want {
			t.Errorf("%q: kinds %s, want %s", tc.src, got, want)
		}
	}
}

func TestLines(t *testing.T) {
	src := "a\n/* x\ny */ b\n`raw\nraw` c\n\n// d\r\ne"
	_, toks := kinds(src)
	type pos struct{ line, end int }
	want := []pos{{1, 1}, {2, 3}, {3, 3}, {4, 5}, {5, 5}, {7, 7}, {8, 8}}
	if len(toks) != len(want) {
		t.Fatalf("%d tokens", len(toks))
	}
	for i, tk := range toks {
		if tk.Line != want[i].line || tk.EndLine != want[i].end {
			t.Errorf("token %d %q: lines %d-%d, want %d-%d", i, src[tk.Off:tk.End], tk.Line, tk.EndLine, want[i].line, want[i].end)
		}
	}
	if c := toks[5]; src[c.Off:c.End] != "// d" {
		t.Errorf("line comment text %q (the \\r of CRLF belongs to the line end)", src[c.Off:c.End])
	}
}
