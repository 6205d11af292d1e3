package dedup

import "math"

// Verdict is what the index decided about one function.
type Verdict uint8

const (
	Unique Verdict = iota // kept
	Exact                 // same key as a kept function
	Near                  // similar to a kept function above the threshold
)

// Index remembers kept functions. Offer functions in a stable order and the
// first of each group of duplicates is the one kept.
type Index struct {
	threshold float64
	bands     int
	rows      int
	exact     map[Key]struct{}
	buckets   map[uint64][]int32
	sigs      []*Signature
}

// NewIndex returns an index that always detects exact duplicates and, when
// near is set, near duplicates whose estimated Jaccard similarity is at least
// threshold.
//
// The signature is cut into bands of rows hashes; two functions become
// candidates when some band agrees, which happens with probability
// 1-(1-s^rows)^bands for similarity s. The widest band that still catches a
// pair at the threshold 99% of the time is used, then every candidate is
// checked against the threshold on the whole signature.
func NewIndex(near bool, threshold float64) *Index {
	ix := &Index{exact: map[Key]struct{}{}}
	if near {
		ix.threshold = threshold
		ix.rows, ix.bands = bandsFor(threshold)
		ix.buckets = map[uint64][]int32{}
	}
	return ix
}

func bandsFor(threshold float64) (rows, bands int) {
	rows, bands = 1, NumHashes
	for r := NumHashes; r >= 1; r /= 2 {
		b := NumHashes / r
		if 1-math.Pow(1-math.Pow(threshold, float64(r)), float64(b)) >= 0.99 {
			return r, b
		}
	}
	return rows, bands
}

// Add decides whether fp duplicates a function kept before and, if not,
// keeps it.
func (ix *Index) Add(fp Fingerprint) Verdict {
	if _, dup := ix.exact[fp.Key]; dup {
		return Exact
	}
	if ix.buckets != nil && fp.Sig != nil {
		keys := make([]uint64, ix.bands)
		for b := range ix.bands {
			keys[b] = bandKey(b, fp.Sig[b*ix.rows:(b+1)*ix.rows])
			for _, j := range ix.buckets[keys[b]] {
				if Similarity(fp.Sig, ix.sigs[j]) >= ix.threshold {
					return Near
				}
			}
		}
		id := int32(len(ix.sigs))
		ix.sigs = append(ix.sigs, fp.Sig)
		for _, k := range keys {
			ix.buckets[k] = append(ix.buckets[k], id)
		}
	}
	ix.exact[fp.Key] = struct{}{}
	return Unique
}

func bandKey(band int, v []uint32) uint64 {
	h := uint64(band+1) * 0x9E3779B97F4A7C15
	for _, x := range v {
		h = mix(h ^ uint64(x))
	}
	return h
}
