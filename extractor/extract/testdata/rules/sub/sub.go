// Package sub checks import paths of subdirectories.
package sub

// Join concatenates a and b with a separator between them.
func Join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "/" + b
}
