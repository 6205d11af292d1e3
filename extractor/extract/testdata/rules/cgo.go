package rules

/*
#include <stdlib.h>

static int twice(int x) { return 2 * x; }
*/
import "C"

// Twice doubles x by calling into C, for callers on the C side.
//
//export Twice
func Twice(x C.int) C.int {
	r := C.twice(x)
	if r < 0 {
		return 0
	}
	return r
}
