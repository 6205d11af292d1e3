"""Go source for the tiny model and test data, without network or the extractor.

The tokenizer and the tiny base are trained on the Go toolchain's own standard library
(``$(go env GOROOT)/src``); without Go, on a few bundled functions. ``stdlib_pairs`` is a
deliberately simple stand-in for ``golora-extract`` (doc comment immediately above a top-level
gofmt'd ``func``, body up to the closing ``}`` at column 0) for when that binary is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

# Packages the tests train and evaluate on; the tiny base is pretrained on everything else.
HELDOUT_PACKAGES = (
    "strings", "bytes", "sort", "strconv", "unicode/utf8", "path", "bufio", "container/list",
    "text/tabwriter", "errors", "slices", "maps", "math/bits", "encoding/hex", "encoding/csv",
)
_SKIP_DIRS = {"testdata", "vendor", "cmd", "internal", "builtin"}
_GENERATED = re.compile(r"^// Code generated .* DO NOT EDIT\.$", re.M)
_DIRECTIVE = re.compile(r"^//(go:|line |export |extern |nolint|lint:|\s*\+build)")

BUNDLED_GO = '''package snippets

// Max returns the larger of a and b.
func Max(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// Reverse returns a copy of s with its elements in reverse order.
func Reverse[T any](s []T) []T {
	out := make([]T, len(s))
	for i, v := range s {
		out[len(s)-1-i] = v
	}
	return out
}

// Contains reports whether v is present in s.
func Contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// Sum adds up all the values in the slice and returns the total.
func Sum(values []float64) float64 {
	total := 0.0
	for _, v := range values {
		total += v
	}
	return total
}

// CountWords returns how many times each word occurs in text.
func CountWords(text string) map[string]int {
	counts := make(map[string]int)
	for _, w := range strings.Fields(text) {
		counts[w]++
	}
	return counts
}

// Retry calls fn until it succeeds or attempts are exhausted, sleeping between calls.
func Retry(attempts int, sleep time.Duration, fn func() error) error {
	var err error
	for i := 0; i < attempts; i++ {
		if err = fn(); err == nil {
			return nil
		}
		time.Sleep(sleep)
	}
	return fmt.Errorf("after %d attempts: %w", attempts, err)
}

// Get returns the value stored under key and whether it was present.
func (c *Cache) Get(key string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.items[key]
	return v, ok
}

// Reconcile brings the observed state of the object in line with its spec.
func (r *Reconciler) Reconcile(ctx context.Context, name string) error {
	obj, err := r.client.Get(ctx, name)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	}
	return r.apply(ctx, obj)
}
'''


def goroot() -> Path | None:
    """The Go toolchain's root: $GOROOT, else ``go env GOROOT``, else None."""
    env = os.environ.get("GOROOT")
    if env and Path(env, "src").is_dir():
        return Path(env)
    go = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if go is None:
        return None
    try:
        out = subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    root = Path(out.stdout.strip())
    return root if (root / "src").is_dir() else None


def go_version() -> str:
    root = goroot()
    if root is None:
        return "none"
    v = root / "VERSION"
    return v.read_text().splitlines()[0].strip() if v.is_file() else str(root)


def go_files(src: Path, *, include: tuple[str, ...] | None = None, exclude: tuple[str, ...] = ()) -> Iterator[Path]:
    """Non-test .go files under ``src`` in a stable order; ``include``/``exclude`` are package
    directories relative to ``src`` (a package's subpackages are not included with it)."""
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith((".", "_")))
        rel = os.path.relpath(dirpath, src).replace(os.sep, "/")
        if include is not None and rel not in include:
            continue
        if rel in exclude:
            continue
        for name in sorted(filenames):
            if name.endswith(".go") and not name.endswith("_test.go"):
                yield Path(dirpath, name)


def read_go(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    head = text.split("\npackage ", 1)[0]
    if _GENERATED.search(head) or "//go:build ignore" in head:
        return None
    return text


def extract_pairs(text: str, *, min_lines: int = 5, min_doc_words: int = 3, max_chars: int = 4000) -> list[dict]:
    """Doc-commented top-level functions of one gofmt'd file as instruction/output pairs."""
    lines = text.split("\n")
    pairs: list[dict] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("func "):
            i += 1
            continue
        j = i - 1
        doc: list[str] = []
        while j >= 0 and lines[j].startswith("//"):
            doc.insert(0, lines[j])
            j -= 1
        end = i
        if not lines[i].rstrip().endswith("}"):
            end = i + 1
            while end < len(lines) and lines[end] != "}":
                end += 1
        body = lines[i : end + 1]
        i = end + 1
        words = [ln[2:].strip() for ln in doc if not _DIRECTIVE.match(ln)]
        instruction = "\n".join(w for w in words).strip()
        if not instruction or len(instruction.split()) < min_doc_words or len(body) < min_lines:
            continue
        output = "\n".join(body)
        if len(output) > max_chars or end >= len(lines):
            continue
        pairs.append({"instruction": instruction, "output": output})
    return pairs


def stdlib_pairs(
    *, include: tuple[str, ...] | None = HELDOUT_PACKAGES, exclude: tuple[str, ...] = (), max_pairs: int = 0
) -> list[dict]:
    """Pairs from the local Go standard library (deduplicated by output), or the bundled ones."""
    root = goroot()
    pairs: list[dict] = []
    seen: set[str] = set()
    if root is not None:
        for path in go_files(root / "src", include=include, exclude=exclude):
            text = read_go(path)
            if text is None:
                continue
            for pair in extract_pairs(text):
                if pair["output"] in seen:
                    continue
                seen.add(pair["output"])
                pairs.append(pair)
                if max_pairs and len(pairs) >= max_pairs:
                    return pairs
    if not pairs:
        pairs = extract_pairs(BUNDLED_GO, min_lines=3)
    return pairs


def go_corpus(*, exclude: tuple[str, ...] = HELDOUT_PACKAGES, max_bytes: int = 4_000_000) -> list[str]:
    """Go source texts for tokenizer/pretraining, capped at ``max_bytes`` (bundled if no Go)."""
    root = goroot()
    texts: list[str] = []
    total = 0
    if root is not None:
        for path in go_files(root / "src", exclude=exclude):
            text = read_go(path)
            if text is None:
                continue
            texts.append(text)
            total += len(text)
            if total >= max_bytes:
                break
    return texts or [BUNDLED_GO]
