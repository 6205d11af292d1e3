"""The quality gate's Go checks: generated snippets through ``golora-extract check``.

The parse check says whether a generation is Go at all; for pairs taken from the standard
library, ``--typecheck`` puts the generated function in place of the original, in its own
package, and runs go/types (the pair's ``meta`` from the extractor says where it came from).
A check that cannot run is a note, never a failure: the gate then judges without it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from golora.api.loratraining_status import GenerationMetrics, shown

CHECK_TIMEOUT = 600.0  # seconds for golora-extract check (type-checking big packages included)
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_+-]*\s*\n(.*?)(?:\n\s*```\s*)?$", re.S)


def strip_fences(text: str) -> str:
    """Code inside a markdown fence (```go ... ```), else the text itself."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


@dataclass
class GoCheck:
    """``golora-extract check --typecheck`` on a list of snippets (None where it did not run)."""

    parse_rate: float | None = None
    checked: int = 0
    parsed: list[bool | None] = field(default_factory=list)  # per snippet
    type_checks: list[str | None] = field(default_factory=list)  # ok / error / skipped per snippet
    type_details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def part(self, lo: int, hi: int) -> GoCheck:
        """The same check restricted to snippets lo..hi (one model's share of a joint run)."""
        parsed = self.parsed[lo:hi]
        known = [p for p in parsed if p is not None]
        return GoCheck(
            parse_rate=sum(known) / len(known) if known else None, checked=len(known), parsed=parsed,
            type_checks=self.type_checks[lo:hi], type_details=self.type_details[lo:hi], notes=self.notes,
        )

    def type_counts(self) -> tuple[int, int]:
        """(checkable, passed) among these snippets."""
        ran = [t for t in self.type_checks if t in ("ok", "error")]
        return len(ran), sum(t == "ok" for t in ran)


def find_extractor(binary: str) -> str | None:
    """Absolute path of the golora-extract binary (a path or a name on PATH), or None."""
    if "/" in binary:
        return binary if shutil.which(binary) else None
    return shutil.which(binary)


def _run_check(exe: str, args: list[str], payload: str, timeout: float) -> tuple[dict | None, str | None]:
    try:
        proc = subprocess.run([exe, "check", *args], input=payload, capture_output=True, text=True,
                              timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"Go check failed to run: {exc}"
    if proc.returncode != 0:
        return None, f"Go check exited {proc.returncode}: {proc.stderr.strip()[:300]}"
    try:
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        return json.loads(lines[-1]), None
    except (ValueError, IndexError) as exc:
        return None, f"Go check output unreadable ({exc}): {proc.stdout[:200]!r}"


def go_check(snippets: list[str], binary: str, metas: list[dict | None] | None = None, *,
             goroot: str | Path | None = None, typecheck: bool = True,
             timeout: float = CHECK_TIMEOUT) -> GoCheck:
    """Parse (and, with ``typecheck``, type-check the snippets that carry a standard library pair's
    ``meta``) Go snippets through ``golora-extract check [--typecheck]``: JSONL ``{"code", "meta"}``
    on stdin, a report on stdout (with per-line ``results`` in type-check mode). ``parse_rate`` is
    None and a note says why when the check could not run."""
    out = GoCheck(parsed=[None] * len(snippets), type_checks=[None] * len(snippets), type_details=[""] * len(snippets))
    exe = find_extractor(binary)
    if exe is None:
        out.notes.append(f"Go parse check skipped: {binary} not found")
        return out
    if not snippets:
        out.notes.append("Go parse check skipped: no generations")
        return out
    metas = metas or [None] * len(snippets)
    payload = "".join(json.dumps({"code": strip_fences(s), **({"meta": m} if m else {})}) + "\n"
                      for s, m in zip(snippets, metas, strict=True))
    args = ["--typecheck", *(["--goroot", str(goroot)] if goroot else [])] if typecheck else []
    report, note = _run_check(exe, args, payload, timeout)
    if report is None:
        out.notes.append(note)
        return out
    if report.get("note"):
        out.notes.append(f"Go type check skipped: {report['note']}")
    try:
        total, parsed = int(report["total"]), int(report["parsed"])
        out.parse_rate = float(report.get("rate", parsed / total if total else 0.0))
        out.checked = total
        results = report.get("results") or []
        if typecheck and len(results) == len(snippets):
            out.parsed = [bool(r.get("parsed")) for r in results]
            out.type_checks = [r.get("typeCheck") for r in results]
            out.type_details = [r.get("detail") or "" for r in results]
        elif typecheck:
            out.parse_rate, out.checked = None, 0
            out.notes.append("Go type check skipped: golora-extract gave no per-line results (an older binary?)")
    except (ValueError, KeyError, TypeError) as exc:
        out.parse_rate, out.checked = None, 0
        out.notes.append(f"Go check output unreadable ({exc})")
    return out


def go_checks(groups: list[list[str]], binary: str, metas: list[list[dict | None]], *,
              goroot: str | Path | None = None, timeout: float = CHECK_TIMEOUT) -> tuple[list[GoCheck], list[str]]:
    """The Go checks for several models' generations in one ``--typecheck`` run (dependencies are
    type-checked once), split back per model; if that run fails, the parse check alone per model.
    Returns the checks and the notes."""
    flat = [s for grp in groups for s in grp]
    joint = go_check(flat, binary, [m for grp in metas for m in grp], goroot=goroot, timeout=timeout)
    if joint.parse_rate is not None:
        parts, lo = [], 0
        for grp in groups:
            parts.append(joint.part(lo, lo + len(grp)))
            lo += len(grp)
        return parts, joint.notes
    notes = list(joint.notes)
    if find_extractor(binary) is None or not flat:
        return [GoCheck(parsed=[None] * len(grp), type_checks=[None] * len(grp)) for grp in groups], notes
    parts = [go_check(grp, binary, typecheck=False, timeout=min(timeout, 120.0)) for grp in groups]
    for part in parts:
        notes.extend(n for n in part.notes if n not in notes)
    return parts, notes


def go_parse_rate(snippets: list[str], binary: str, timeout: float = 120.0) -> tuple[float | None, int, str | None]:
    """Parse rate of Go snippets via ``golora-extract check``. Returns (rate, checked, note); rate is
    None and the note says why when the check could not run."""
    res = go_check(snippets, binary, typecheck=False, timeout=timeout)
    return res.parse_rate, res.checked, (res.notes[0] if res.notes else None)


def apply_checks(m: GenerationMetrics, check: GoCheck) -> None:
    """Record one model's share of the Go checks in its metrics."""
    m.go_parse_rate, m.go_parse_checked = check.parse_rate, check.checked or None
    checkable, passed = check.type_counts()
    if checkable:
        m.type_checkable, m.type_check_passed = checkable, passed
        m.type_check_rate = shown(passed / checkable)  # a printer column; the counts are exact
    elif any(t is not None for t in check.type_checks):
        m.type_checkable = 0


def pair_metas(*paths: Path | str | None) -> dict[tuple[str, str], dict]:
    """``meta`` of each pair in the extractor's JSONL files, by (instruction, output): what the
    type check needs to find the original function (package, path, name, receiver)."""
    metas: dict[tuple[str, str], dict] = {}
    for path in paths:
        if path is None or not Path(path).is_file():
            continue
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                try:
                    obj = json.loads(line)
                    meta = obj.get("meta")
                    if isinstance(meta, dict) and meta.get("name"):
                        metas.setdefault((obj["instruction"], obj["output"]), meta)
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue
    return metas
