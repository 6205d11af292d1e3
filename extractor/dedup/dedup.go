// Package dedup finds repeated function bodies.
//
// Exact duplicates share a key: the hash of the function's token stream with
// comments and layout removed, so reformatting or a changed comment does not
// hide a copy. Near duplicates (a renamed variable, a changed constant: OS
// variants, copies vendored and patched) are found with MinHash signatures
// over token shingles and LSH banding, which compares each body only with the
// few earlier bodies that share a band instead of with all of them.
package dedup

import (
	"crypto/sha256"
	"math"
	"math/bits"

	"golora.dev/extractor/internal/lex"
)

// Key identifies a normalized function source.
type Key [sha256.Size]byte

// NumHashes is the length of a MinHash signature.
const NumHashes = 128

// ShingleSize is the number of consecutive tokens in one shingle.
const ShingleSize = 5

// Signature is a MinHash signature: for each of NumHashes hash functions, the
// least hash over the shingles of a body.
type Signature [NumHashes]uint32

// Fingerprint is what dedup needs to know about one function.
type Fingerprint struct {
	Key Key
	Sig *Signature // nil unless near-duplicate detection asked for it
}

// Normalize returns src's tokens, comments dropped, joined by single
// spaces: two sources normalize alike when they differ only in comments and
// layout.
func Normalize(src string) string {
	var b []byte
	tokens(src, func(tok []byte) {
		if len(b) > 0 {
			b = append(b, ' ')
		}
		b = append(b, tok...)
	})
	return string(b)
}

// Of returns the fingerprint of a function's source; withSig also computes
// its MinHash signature.
func Of(src string, withSig bool) Fingerprint {
	h := sha256.New()
	var toks []uint64
	sep := []byte{}
	tokens(src, func(tok []byte) {
		h.Write(sep)
		sep = space
		h.Write(tok)
		if withSig {
			toks = append(toks, hashBytes(tok))
		}
	})
	var fp Fingerprint
	h.Sum(fp.Key[:0])
	if withSig {
		fp.Sig = minhash(toks)
	}
	return fp
}

var space = []byte{' '}

// tokens calls emit with each token of src but comments.
func tokens(src string, emit func(tok []byte)) {
	b := []byte(src)
	lx := lex.New(b)
	for {
		t := lx.Next()
		switch t.Kind {
		case lex.EOF:
			return
		case lex.Comment:
			continue
		}
		emit(b[t.Off:t.End])
	}
}

// hashBytes is 64-bit FNV-1a.
func hashBytes(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xFF51AFD7ED558CCD
	x ^= x >> 33
	x *= 0xC4CEB9FE1A85EC53
	return x ^ (x >> 33)
}

// The hash functions are h_k(x) = (a_k*x + b_k) >> 32 over 64-bit integers
// (multiply-shift), with a_k odd; the constants come from a fixed seed so
// signatures are the same on every machine.
var mulA, addB [NumHashes]uint64

func init() {
	s := uint64(0x9E3779B97F4A7C15)
	for i := range NumHashes {
		mulA[i] = splitmix(&s) | 1
		addB[i] = splitmix(&s)
	}
}

func splitmix(s *uint64) uint64 {
	*s += 0x9E3779B97F4A7C15
	z := *s
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// minhash signs the set of ShingleSize-token shingles of toks: for each
// hash function, the least hash of any shingle. Two signatures agree on a
// position with probability equal to the Jaccard similarity of the sets.
// (One-permutation hashing would be cheaper, but on short functions its
// estimates were several times noisier in our measurements.) A body
// shorter than one shingle is a single shingle.
func minhash(toks []uint64) *Signature {
	sig := new(Signature)
	for i := range sig {
		sig[i] = math.MaxUint32
	}
	n := max(len(toks)-ShingleSize+1, 1)
	xs := make([]uint64, n, n+3)
	for i := range xs {
		var x uint64
		for j := i; j < i+ShingleSize && j < len(toks); j++ {
			x = bits.RotateLeft64(x, 17) ^ toks[j]
			x *= 0x100000001B3
		}
		xs[i] = mix(x)
	}
	// Four shingles per pass over the hash functions: each constant is
	// loaded once for four products.
	for len(xs)%4 != 0 {
		xs = append(xs, xs[0]) // a repeated shingle changes no minimum
	}
	for i := 0; i < len(xs); i += 4 {
		x0, x1, x2, x3 := xs[i], xs[i+1], xs[i+2], xs[i+3]
		for k := range NumHashes {
			a, b := mulA[k], addB[k]
			m := sig[k]
			m = min(m, uint32((a*x0+b)>>32), uint32((a*x1+b)>>32))
			m = min(m, uint32((a*x2+b)>>32), uint32((a*x3+b)>>32))
			sig[k] = m
		}
	}
	return sig
}

// Similarity estimates the Jaccard similarity of the shingle sets behind two
// signatures: the fraction of hash functions whose minimums agree.
func Similarity(a, b *Signature) float64 {
	eq := 0
	for i := range a {
		if a[i] == b[i] {
			eq++
		}
	}
	return float64(eq) / NumHashes
}
