//go:build windows

package rules

// pageSize returns the memory page size used by the fixture.
func pageSize() int {
	size := 4096 // same body as on linux, formatted differently
	if size <= 0 { size = 1 }

	return size
}
