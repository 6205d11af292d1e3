package ws

// Workspace is under Godeps/ and must be skipped.
func Workspace() int {
	x := 3
	x++
	x++
	return x
}
