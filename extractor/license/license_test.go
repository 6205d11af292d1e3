package license

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLicenseIdentify(t *testing.T) {
	for text, want := range map[string]string{
		"MIT License\n\nPermission is hereby granted, free of charge, to any person obtaining a copy":                             "MIT",
		"                                 Apache License\n                           Version 2.0, January 2004":                   "Apache-2.0",
		"Redistribution and use in source and binary forms, with or without\nmodification... Neither the name of Google LLC nor":  "BSD-3-Clause",
		"Redistribution and use in source and binary forms, with or without modification, are permitted":                          "BSD-2-Clause",
		"Mozilla Public License Version 2.0\n==================================":                                                  "MPL-2.0",
		"Permission to use, copy, modify, and/or distribute this software for any\npurpose with or without fee is hereby granted": "ISC",
		"GNU GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007":                                                                    "GPL-3.0",
		"GNU GENERAL PUBLIC LICENSE\n Version 2, June 1991":                                                                       "GPL-2.0",
		"GNU LESSER GENERAL PUBLIC LICENSE\n Version 3, 29 June 2007":                                                             "LGPL-3.0",
		"Business Source License 1.1\n\nParameters":                                                                               "BUSL-1.1",
		"All rights reserved. Do not copy.":                                                                                       "",
	} {
		if got := Identify(text); got != want {
			t.Errorf("Identify(%.40q) = %q, want %q", text, got, want)
		}
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "COPYING"), []byte("Proprietary."), 0o644)
	if got := Detect(dir); got != "unknown" {
		t.Errorf("unrecognised license file: %q, want unknown", got)
	}
	sub := filepath.Join(t.TempDir(), "src")
	os.MkdirAll(sub, 0o755)
	os.WriteFile(filepath.Join(filepath.Dir(sub), "LICENSE"), []byte("Permission is hereby granted, free of charge, to any person obtaining a copy"), 0o644)
	if got := Detect(sub); got != "MIT" {
		t.Errorf("license one level up (GOROOT/src): %q", got)
	}
}
