//go:build ignore || linux

package rules

// maybeIgnored builds on linux, so its file is not build-ignored.
func maybeIgnored(s string) string {
	if s == "" {
		return "empty"
	}
	return s + "!"
}
