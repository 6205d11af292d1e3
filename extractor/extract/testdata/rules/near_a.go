package rules

import "strings"

// normalizeLines trims every line of s and drops the empty and repeated ones.
func normalizeLines(s string) string {
	var out []string
	seen := make(map[string]bool)
	for i, line := range strings.Split(s, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if seen[line] {
			continue
		}
		seen[line] = true
		if i%2 == 0 {
			line = strings.ToLower(line)
		} else {
			line = strings.ToUpper(line)
		}
		line = strings.ReplaceAll(line, "\t", " ")
		line = strings.TrimSuffix(line, ";")
		out = append(out, line)
	}
	result := strings.Join(out, "\n")
	if len(result) > 1000 {
		result = result[:1000]
	}
	return result
}
