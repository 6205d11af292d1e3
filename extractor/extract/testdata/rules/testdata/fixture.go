package testdata

// inTestdata is under testdata/ and must be skipped.
func inTestdata() int {
	x := 1
	x++
	x++
	return x
}
