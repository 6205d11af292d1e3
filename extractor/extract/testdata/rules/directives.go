package rules

import "unsafe"

//go:nosplit
func directiveOnly(p unsafe.Pointer) uintptr {
	x := uintptr(p)
	x++
	x--
	return x
}

// withNolint adds the numbers of xs and returns their sum.
//
//nolint:gocyclo
// nolint
// +build linux
// +k8s:deepcopy-gen=true
// +kubebuilder:validation:Optional
//lint:ignore U1000 kept for the fixture
func withNolint(xs []int) int {
	sum := 0
	for _, x := range xs {
		sum += x
	}
	return sum
}

// withGoDirective doubles every element of xs in place.
//
//go:noinline
func withGoDirective(xs []int) {
	for i := range xs {
		xs[i] *= 2
	}
	_ = xs
}

func undocumented(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// tooShort is a documented function of one line only.
func tooShort() int { return 1 }

// Short doc.
func shortDoc(a int) int {
	a++
	a++
	a++
	return a
}

// Exported returns the value of Go's nonsense constant, computed slowly.
func Exported() int {
	n := 0
	for i := 0; i < 42; i++ {
		n++
	}
	return n
}

// bodyless is implemented in assembly; it has no body at all.
func bodyless(x int) int
