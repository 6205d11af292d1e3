// Package lex is a minimal Go tokenizer for the two jobs that need tokens but
// no syntax tree: counting the pairs of skipped files and fingerprinting
// function bodies for deduplication.
//
// It knows exactly what go/scanner knows about where comments, strings and
// runes begin and end (so braces and comment markers inside literals are
// never mistaken for code), and little else: operators come out one byte at
// a time and no semicolons are inserted. That is several times faster than
// go/scanner, which builds a line table and spells every token.
package lex

// Kind is the class of a token.
type Kind uint8

// Token kinds. Ident covers keywords; Literal covers numbers, strings and
// runes; Op is any other single byte of punctuation.
const (
	EOF Kind = iota
	Ident
	Literal
	Comment
	LParen
	RParen
	LBrack
	RBrack
	LBrace
	RBrace
	Op
)

// Token is one token of the source.
type Token struct {
	Kind     Kind
	Off, End int // byte offsets: src[Off:End] is the token text
	Line     int // 1-based line of Off
	EndLine  int // line of the token's last byte (differs for raw strings and block comments)
}

// Lexer splits Go source into tokens.
type Lexer struct {
	src  []byte
	off  int
	line int
}

// New returns a lexer over src.
func New(src []byte) *Lexer { return &Lexer{src: src, line: 1} }

// Next returns the next token; at the end of src, a token of Kind EOF.
func (l *Lexer) Next() Token {
	src := l.src
	// Skip white space, counting lines.
	for l.off < len(src) {
		c := src[l.off]
		if c == '\n' {
			l.line++
		} else if c != ' ' && c != '\t' && c != '\r' {
			break
		}
		l.off++
	}
	t := Token{Off: l.off, Line: l.line}
	if l.off >= len(src) {
		t.Kind, t.End, t.EndLine = EOF, l.off, l.line
		return t
	}
	c := src[l.off]
	switch {
	case isIdentStart(c):
		l.off++
		for l.off < len(src) && isIdentByte(src[l.off]) {
			l.off++
		}
		t.Kind = Ident
	case isDigit(c) || c == '.' && l.off+1 < len(src) && isDigit(src[l.off+1]):
		l.number()
		t.Kind = Literal
	case c == '"' || c == '\'':
		l.quoted(c)
		t.Kind = Literal
	case c == '`':
		l.off++
		for l.off < len(src) && src[l.off] != '`' {
			if src[l.off] == '\n' {
				l.line++
			}
			l.off++
		}
		if l.off < len(src) {
			l.off++
		}
		t.Kind = Literal
	case c == '/' && l.off+1 < len(src) && src[l.off+1] == '/':
		for l.off < len(src) && src[l.off] != '\n' {
			l.off++
		}
		if l.off > t.Off && src[l.off-1] == '\r' { // go/scanner drops the \r of a CRLF line comment
			t.End = l.off - 1
		}
		t.Kind = Comment
	case c == '/' && l.off+1 < len(src) && src[l.off+1] == '*':
		l.off += 2
		for l.off < len(src) && !(src[l.off] == '*' && l.off+1 < len(src) && src[l.off+1] == '/') {
			if src[l.off] == '\n' {
				l.line++
			}
			l.off++
		}
		l.off = min(l.off+2, len(src))
		t.Kind = Comment
	default:
		l.off++
		switch c {
		case '(':
			t.Kind = LParen
		case ')':
			t.Kind = RParen
		case '[':
			t.Kind = LBrack
		case ']':
			t.Kind = RBrack
		case '{':
			t.Kind = LBrace
		case '}':
			t.Kind = RBrace
		default:
			t.Kind = Op
		}
	}
	if t.End == 0 {
		t.End = l.off
	}
	t.EndLine = l.line
	return t
}

// quoted skips an interpreted string or rune literal; like go/scanner it
// stops at a newline if the literal is not terminated.
func (l *Lexer) quoted(q byte) {
	src := l.src
	l.off++
	for l.off < len(src) {
		c := src[l.off]
		if c == q {
			l.off++
			return
		}
		if c == '\n' {
			return
		}
		if c == '\\' && l.off+1 < len(src) && src[l.off+1] != '\n' {
			l.off++
		}
		l.off++
	}
}

// number skips a numeric literal, including exponents with signs
// (1e+9, 0x1p-2) and digit separators.
func (l *Lexer) number() {
	src := l.src
	hex := src[l.off] == '0' && l.off+1 < len(src) && (src[l.off+1] == 'x' || src[l.off+1] == 'X')
	for l.off < len(src) {
		c := src[l.off]
		switch {
		case isIdentByte(c) || c == '.':
			l.off++
		case (c == '+' || c == '-') && l.off > 0:
			p := src[l.off-1]
			if hex && (p == 'p' || p == 'P') || !hex && (p == 'e' || p == 'E') {
				l.off++
				continue
			}
			return
		default:
			return
		}
	}
}

func isIdentStart(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || c >= 0x80
}

func isIdentByte(c byte) bool { return isIdentStart(c) || isDigit(c) }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }
