// Package license names the license of a Go tree by the key phrases of its
// LICENSE or COPYING file, as an SPDX id, so every pair can say under which
// terms its code was published.
package license

import (
	"os"
	"path/filepath"
	"strings"
)

// Files are the names searched for a license, in order.
var Files = []string{"LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "COPYING", "COPYING.md", "COPYING.txt"}

// Detect returns the SPDX id of the license file in dir, or in its
// parent when dir has none (GOROOT/src keeps its LICENSE one level up);
// "unknown" when a license file is there but not recognised, "" when there
// is none.
func Detect(dir string) string {
	if id, found := InDir(dir); found {
		return id
	}
	id, _ := InDir(filepath.Dir(dir))
	return id
}

// InDir reports the SPDX id of the first license file in dir; found is
// true when a file exists even if its text is not recognised.
func InDir(dir string) (id string, found bool) {
	for _, name := range Files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			continue
		}
		if id := Identify(string(b)); id != "" {
			return id, true
		}
		return "unknown", true
	}
	return "", false
}

// Identify recognises a license text by its key phrases and returns its SPDX
// id, or "" when the text matches none of them.
func Identify(text string) string {
	t := strings.Join(strings.Fields(strings.ToLower(text)), " ")
	has := func(s ...string) bool {
		for _, p := range s {
			if !strings.Contains(t, p) {
				return false
			}
		}
		return true
	}
	switch {
	case has("apache license", "version 2.0"):
		return "Apache-2.0"
	case has("mozilla public license", "2.0"):
		return "MPL-2.0"
	case has("business source license 1.1"):
		return "BUSL-1.1"
	case has("gnu lesser general public license"):
		if has("version 2.1") {
			return "LGPL-2.1"
		}
		if has("version 3") {
			return "LGPL-3.0"
		}
		return "LGPL"
	case has("gnu affero general public license"):
		return "AGPL-3.0"
	case has("gnu general public license"):
		if has("version 3") {
			return "GPL-3.0"
		}
		if has("version 2") {
			return "GPL-2.0"
		}
		return "GPL"
	case has("permission to use, copy, modify, and/or distribute this software for any purpose with or without fee"),
		has("permission to use, copy, modify, and distribute this software for any purpose with or without fee"):
		return "ISC"
	case has("permission is hereby granted, free of charge, to any person obtaining a copy"):
		return "MIT"
	case has("redistribution and use in source and binary forms"):
		if has("neither the name") || has("endorse or promote products") {
			return "BSD-3-Clause"
		}
		return "BSD-2-Clause"
	case has("this is free and unencumbered software released into the public domain"):
		return "Unlicense"
	}
	return ""
}
