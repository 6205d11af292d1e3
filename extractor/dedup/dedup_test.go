package dedup

import (
	"fmt"
	"strings"
	"testing"
)

const base = `func sum(xs []int) int {
	total := 0
	for _, x := range xs {
		if x < 0 {
			continue
		}
		total += x
	}
	return total
}`

func TestExactIgnoresLayoutAndComments(t *testing.T) {
	reformatted := "func sum(xs []int) int { // adds\n\ttotal := 0\n\n\tfor _, x := range xs {\n\t\tif x < 0 { continue }\n" +
		"\t\t/* skip nothing */ total += x\n\t}\n\treturn total\n}"
	if Of(base, false).Key != Of(reformatted, false).Key {
		t.Errorf("reformatted copy has a different key:\n%s\n%s", Normalize(base), Normalize(reformatted))
	}
	renamed := strings.Replace(base, "total", "acc", -1)
	if Of(base, false).Key == Of(renamed, false).Key {
		t.Error("renamed variable gives the same exact key")
	}
	str := strings.Replace(base, "total := 0", `total := len("a  b // c")`, 1)
	str2 := strings.Replace(base, "total := 0", `total := len("a b // c")`, 1)
	if Of(str, false).Key == Of(str2, false).Key {
		t.Error("white space inside a string literal was collapsed")
	}
}

func TestIndex(t *testing.T) {
	near := strings.Replace(base, "x < 0", "x < 1", 1) // one constant changed
	long := strings.Repeat("\t_ = 1\n", 0) + base
	other := `func parse(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("parse %q: %w", s, err)
	}
	return n, nil
}`
	ix := NewIndex(true, 0.5)
	if v := ix.Add(Of(base, true)); v != Unique {
		t.Fatalf("first: %v", v)
	}
	if v := ix.Add(Of(long, true)); v != Exact {
		t.Errorf("exact copy: %v, want Exact", v)
	}
	if v := ix.Add(Of(near, true)); v != Near {
		t.Errorf("one constant changed (similarity %.2f): %v, want Near",
			Similarity(Of(base, true).Sig, Of(near, true).Sig), v)
	}
	if v := ix.Add(Of(other, true)); v != Unique {
		t.Errorf("unrelated function: %v, want Unique", v)
	}

	// Without near-dedup, only exact copies go.
	ix = NewIndex(false, 0.85)
	ix.Add(Of(base, false))
	if v := ix.Add(Of(near, false)); v != Unique {
		t.Errorf("near dedup off: %v, want Unique", v)
	}
	if v := ix.Add(Of(base, false)); v != Exact {
		t.Errorf("near dedup off, exact copy: %v, want Exact", v)
	}
}

func TestSimilarityEstimates(t *testing.T) {
	// A 300-token body with k tokens changed: the estimate follows the change.
	var b strings.Builder
	for i := range 300 {
		fmt.Fprintf(&b, "v%d ", i)
	}
	a := b.String()
	changed := strings.Replace(a, "v150 ", "w150 ", 1)
	s := Similarity(Of(a, true).Sig, Of(changed, true).Sig)
	if s < 0.9 {
		t.Errorf("one token of 300 changed: similarity %.2f, want > 0.9", s)
	}
	var c strings.Builder
	for i := range 300 {
		fmt.Fprintf(&c, "u%d ", i)
	}
	if s := Similarity(Of(a, true).Sig, Of(c.String(), true).Sig); s > 0.1 {
		t.Errorf("disjoint bodies: similarity %.2f", s)
	}
}

func TestBandsFor(t *testing.T) {
	for _, th := range []float64{0.5, 0.7, 0.85, 0.95, 1} {
		r, b := bandsFor(th)
		if r*b != NumHashes {
			t.Errorf("threshold %v: %d rows x %d bands != %d", th, r, b, NumHashes)
		}
	}
	if r, b := bandsFor(0.85); r != 8 || b != 16 {
		t.Errorf("threshold 0.85: %d rows x %d bands, want 8 x 16", r, b)
	}
}

func BenchmarkOf(b *testing.B) {
	for range b.N {
		Of(base, true)
	}
}
