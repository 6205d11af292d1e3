package extract

import (
	"go/ast"
	"strings"

	"golora.dev/extractor/internal/lex"
)

// CountPairs returns how many pairs src would give under o, found from
// tokens alone. It is how the pairs of skipped files (tests, vendored and
// generated code) are counted: it builds no syntax tree and costs a fraction
// of a parse. It applies the same rules as the parse-based extractor and
// attaches doc comments the way go/parser does, so for a file that parses
// the two agree (a test holds them to it over the standard library); a file
// with syntax errors may count differently.
func CountPairs(src []byte, o *Options) int {
	c := counter{o: o, src: src, lx: lex.New(src)}
	c.next()
	n := 0
	for c.tok.Kind != lex.EOF {
		if c.atFunc() {
			if c.funcDecl() {
				n++
			}
			continue
		}
		c.next()
	}
	return n
}

// counter walks tokens, tracking nesting depth and the lead comment of the
// current token (the comment group ending on the line just above it).
type counter struct {
	o   *Options
	src []byte
	lx  *lex.Lexer

	tok         lex.Token
	prev        lex.Token   // the non-comment token before tok
	depth       int         // parentheses, brackets and braces open after tok
	depthBefore int         // ... and before it
	lead        []lex.Token // the lead comment of tok; reused by the next call to next
	group       []lex.Token
}

// raw reads one token, comments included, and keeps the nesting depth.
func (c *counter) raw() {
	c.tok = c.lx.Next()
	c.depthBefore = c.depth
	switch c.tok.Kind {
	case lex.LParen, lex.LBrack, lex.LBrace:
		c.depth++
	case lex.RParen, lex.RBrack, lex.RBrace:
		if c.depth > 0 {
			c.depth--
		}
	}
}

// next advances to the next non-comment token, grouping the comments in
// between as (*parser).next does: a comment on the line of the previous
// token starts a group of its own (a line comment); then comments at most
// one line apart form groups, and the last group is the lead comment of
// the next token if it ends on the line just above it.
func (c *counter) next() {
	c.prev = c.tok
	c.raw()
	c.lead = nil
	if c.tok.Kind != lex.Comment {
		return
	}
	if c.prev.Line > 0 && c.tok.Line == c.prev.EndLine {
		c.comments(0)
	}
	endline := -1
	for c.tok.Kind == lex.Comment {
		endline = c.comments(1)
	}
	if endline+1 == c.tok.Line {
		c.lead = c.group
	}
}

// comments consumes a group of comments that start at most n lines after
// the previous one ends into c.group and returns the line it ends on.
func (c *counter) comments(n int) int {
	c.group = c.group[:0]
	endline := c.tok.Line
	for c.tok.Kind == lex.Comment && c.tok.Line <= endline+n {
		c.group = append(c.group, c.tok)
		endline = c.tok.EndLine
		c.raw()
	}
	return endline
}

// doc returns the lead comment of the current token as an ast.CommentGroup.
func (c *counter) doc() *ast.CommentGroup {
	if c.lead == nil {
		return nil
	}
	g := &ast.CommentGroup{List: make([]*ast.Comment, len(c.lead))}
	for i, t := range c.lead {
		g.List[i] = &ast.Comment{Text: string(c.src[t.Off:t.End])}
	}
	return g
}

func (c *counter) isIdent(s string) bool {
	return c.tok.Kind == lex.Ident && string(c.src[c.tok.Off:c.tok.End]) == s
}

// atFunc reports whether tok is the "func" of a top-level declaration: at
// depth 0 and first on its line (or after ';'), which rules out function
// types and literals ("type F func()", "var f = func() {...}").
func (c *counter) atFunc() bool {
	if c.depth != 0 || !c.isIdent("func") {
		return false
	}
	return c.prev.Kind == lex.EOF || c.prev.EndLine < c.tok.Line ||
		c.prev.Kind == lex.Op && c.src[c.prev.Off] == ';'
}

// endsLine reports whether Go would insert a semicolon after t at a newline.
func (c *counter) endsLine(t lex.Token) bool {
	switch t.Kind {
	case lex.Ident, lex.Literal, lex.RParen, lex.RBrack, lex.RBrace:
		return true
	}
	return false
}

// funcDecl reads a top-level function declaration starting at its "func"
// and reports whether it would become a pair.
func (c *counter) funcDecl() bool {
	doc, start := c.doc(), c.tok
	c.next()
	recv := ""
	if c.tok.Kind == lex.LParen { // receiver: its base type is the last identifier outside brackets
		for c.next(); c.tok.Kind != lex.EOF && c.depth > 0; c.next() {
			if c.tok.Kind == lex.Ident && c.depth == 1 {
				recv = string(c.src[c.tok.Off:c.tok.End])
			}
		}
		c.next()
	}
	if c.tok.Kind != lex.Ident {
		return false
	}
	name := string(c.src[c.tok.Off:c.tok.End])
	// The body is the first '{' outside parentheses and brackets that does
	// not open a struct or interface type in the signature. A line break
	// that ends the signature first means a declaration without a body.
	typeLit := false
	for c.next(); ; c.next() {
		if c.tok.Kind == lex.EOF {
			return false
		}
		if c.depthBefore == 0 && c.tok.Line > c.prev.EndLine && c.endsLine(c.prev) {
			return false
		}
		if c.tok.Kind == lex.Op && c.src[c.tok.Off] == ';' && c.depthBefore == 0 {
			c.next()
			return false
		}
		if c.tok.Kind == lex.LBrace && c.depthBefore == 0 {
			if !typeLit {
				break
			}
			for c.next(); c.tok.Kind != lex.EOF && c.depth > 0; c.next() {
			}
			typeLit = false
			continue
		}
		typeLit = c.isIdent("struct") || c.isIdent("interface")
	}
	for c.next(); c.tok.Kind != lex.EOF && c.depth > 0; c.next() {
	}
	if c.tok.Kind != lex.RBrace {
		return false
	}
	end := c.tok
	c.next()
	if doc == nil {
		return false
	}
	text := CleanDoc(doc)
	exported := ast.IsExported(name) && (recv == "" || ast.IsExported(recv))
	return text != "" &&
		end.Line-start.Line+1 >= c.o.MinLines &&
		len(strings.Fields(text)) >= c.o.MinDocWords &&
		(!c.o.ExportedOnly || exported) &&
		(c.o.MaxOutputBytes <= 0 || end.End-start.Off <= c.o.MaxOutputBytes)
}
