package rules

// broken has a syntax error and must be counted, not fatal.
func broken( {
	return
}
