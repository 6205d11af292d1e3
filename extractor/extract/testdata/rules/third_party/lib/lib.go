package lib

// ThirdParty is under third_party/ and must be skipped.
func ThirdParty() int {
	x := 2
	x++
	x++
	return x
}
