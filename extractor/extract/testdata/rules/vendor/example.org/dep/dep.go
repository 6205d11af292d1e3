package dep

// Vendored is under vendor/ and must be skipped.
func Vendored() int {
	x := 1
	x++
	x++
	return x
}
