"""The quality gate: is the adapter better than the model already served, on Go?

The blog's adapter had loss 7.76 and answered every prompt with 600 tab characters; nothing
stopped it from being served. After training, the gate compares adapter and base eval loss on
the same tokens, and generates greedily with the base model (the same weights, adapter
disabled) and with the adapter for the same held-out prompts, measuring for each:

- whitespace ratio (share of whitespace characters; an empty output counts as all whitespace)
  and the share of outputs that are whitespace only,
- the longest run of one repeated token,
- distinct-1/2 of each generation's tokens (unique n-grams / n-grams, averaged over the
  generations long enough to have one: within-output repetition, as in Welleck et al. 2019),
- EOS rate (generation stopped by the end-of-turn token, not by the token limit),
- Go parse rate of the generated code, and for standard library pairs the type-check rate
  (the generated function in place of the original, in its own package), both through
  ``golora-extract check --typecheck``.

Rules, in order (the first that fails is the reason):

1. DegenerateOutput — collapse guards that fail an adapter whatever the base does (mostly
   whitespace, half the answers blank, almost no distinct bigrams); then the adapter clearly
   worse than the base (whitespace ratio, longest run, distinct-2, within the spec's
   tolerances); then the spec's absolute thresholds, when set.
2. WorseThanBase — adapter eval loss above base eval loss x ``maxEvalLossRatio``.
3. LowParseRate — adapter parse rate below the base's by more than ``parseRateTolerance``, or
   below ``minGoParseRate`` when set.
4. Passed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from golora.api.loratraining import (
    GATE_DEGENERATE_OUTPUT,
    GATE_LOW_PARSE_RATE,
    GATE_PASSED,
    GATE_WORSE_THAN_BASE,
    GateSample,
    GenerationMetrics,
    QualityGate,
    QualityGateResult,
)

log = logging.getLogger(__name__)

SAMPLE_CHARS = 160  # per generation shown in status
SAMPLES_SHOWN = 3
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_+-]*\s*\n(.*?)(?:\n\s*```\s*)?$", re.S)

# Collapse guards: no working model writes like this, whatever its base does.
COLLAPSE_WHITESPACE_RATIO = 0.9  # of all generated characters
COLLAPSE_BLANK_RATE = 0.5  # generations that are empty or whitespace only
COLLAPSE_DISTINCT2 = 0.05  # one or two tokens over and over
# The relative repeat rule never fires below this run (a base that never repeats is no reason
# to fail an adapter with a run of 5 tabs of indentation).
REPEAT_RUN_FLOOR = 16
CHECK_TIMEOUT = 600.0  # seconds for golora-extract check (type-checking big packages included)


@dataclass
class Generation:
    text: str  # decoded, special tokens removed
    token_ids: list[int]  # generated ids, EOS and padding excluded
    ended_with_eos: bool


def whitespace_ratio(text: str) -> float:
    """Share of whitespace characters; an empty string is all whitespace (nothing was said)."""
    if not text:
        return 1.0
    return sum(c.isspace() for c in text) / len(text)


def longest_run(ids: list[int]) -> int:
    """Longest run of one repeated token."""
    best = run = 0
    prev = object()
    for t in ids:
        run = run + 1 if t == prev else 1
        prev = t
        best = max(best, run)
    return best


def distinct_n(ids: list[int], n: int) -> float:
    """Unique n-grams / n-grams of one generation (1.0 when it has none)."""
    grams = [tuple(ids[i : i + n]) for i in range(len(ids) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def _mean_distinct(gens: list[Generation], n: int) -> float | None:
    """distinct-n averaged over the generations that have an n-gram: an empty answer says nothing
    about diversity (and must not make a base that answers nothing look perfectly diverse)."""
    values = [distinct_n(g.token_ids, n) for g in gens if len(g.token_ids) >= n]
    return sum(values) / len(values) if values else None


def strip_fences(text: str) -> str:
    """Code inside a markdown fence (```go ... ```), else the text itself."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def generation_metrics(gens: list[Generation]) -> GenerationMetrics:
    """The gate's numbers for one model's generations; the Go checks are added by ``apply_checks``."""
    m = GenerationMetrics(prompts=len(gens))
    if not gens:
        return m
    m.generated_tokens = sum(len(g.token_ids) for g in gens)
    m.whitespace_ratio = sum(whitespace_ratio(g.text) for g in gens) / len(gens)
    m.whitespace_only_rate = sum(not g.text.strip() for g in gens) / len(gens)
    m.empty_rate = sum(not g.text for g in gens) / len(gens)
    m.longest_repeat_run = max(longest_run(g.token_ids) for g in gens)
    m.distinct1 = _mean_distinct(gens, 1)
    m.distinct2 = _mean_distinct(gens, 2)
    m.eos_rate = sum(g.ended_with_eos for g in gens) / len(gens)
    return m


def shorten(text: str) -> str:
    text = text.encode("unicode_escape").decode("ascii") if text and not text.strip() else text
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 3] + "..."


# -- the Go checks ----------------------------------------------------------------------------


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
        m.type_check_rate = passed / checkable
    elif any(t is not None for t in check.type_checks):
        m.type_checkable = 0


def side_by_side(prompts: list[str], adapter: list[Generation], base: list[Generation] | None,
                 adapter_check: GoCheck, base_check: GoCheck | None, n: int = SAMPLES_SHOWN) -> list[GateSample]:
    """The first ``n`` prompts with both models' answers, shortened, and what the checks said."""
    out = []
    for i in range(min(n, len(prompts), len(adapter))):
        out.append(GateSample(
            prompt=shorten(prompts[i]),
            adapter=shorten(adapter[i].text),
            base=shorten(base[i].text) if base is not None and i < len(base) else None,
            adapter_parses=_at(adapter_check.parsed, i),
            base_parses=_at(base_check.parsed, i) if base_check else None,
            adapter_type_check=_at(adapter_check.type_checks, i),
            base_type_check=_at(base_check.type_checks, i) if base_check else None,
        ))
    return out


def _at(values: list, i: int):
    return values[i] if i < len(values) else None


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


# -- the decision -------------------------------------------------------------------------------


def decide(m: QualityGateResult, gate: QualityGate) -> tuple[bool, str, str]:
    """(passed, reason, message) for the metrics under the spec's rules; also recorded in ``m``
    with the eval-loss ratio and the comparison the verdict rests on."""
    m.eval_loss_ratio = m.eval_loss / m.base_eval_loss if m.eval_loss is not None and m.base_eval_loss else None
    passed, reason, message, comparison = _verdict(m, gate)
    m.passed, m.reason, m.message, m.comparison = passed, reason, message, comparison
    return passed, reason, message


def _num(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def _vs(label: str, a: float | int | None, b: float | int | None) -> str:
    """'parse 0.62 vs 0.48' (adapter vs base), or 'parse 0.62' without a base."""
    fmt = (lambda v: str(v)) if isinstance(a, int) and isinstance(b, int | None) else _num
    return f"{label} {fmt(a)} vs {fmt(b)}" if b is not None else f"{label} {fmt(a)}"


def _degenerate(a: GenerationMetrics, b: GenerationMetrics | None, gate: QualityGate) -> list[tuple[str, str]]:
    """(message, comparison) for each way the adapter's output is degenerate."""
    found: list[tuple[str, str]] = []
    base_ws = b.whitespace_ratio if b else None
    base_run = b.longest_repeat_run if b else None
    base_d2 = b.distinct2 if b else None
    # collapse guards
    if a.whitespace_ratio is not None and a.whitespace_ratio >= COLLAPSE_WHITESPACE_RATIO:
        found.append((f"{a.whitespace_ratio:.0%} of the output is whitespace (collapse guard "
                      f"{COLLAPSE_WHITESPACE_RATIO:.0%})", _vs("whitespace", a.whitespace_ratio, base_ws)))
    blank = a.whitespace_only_rate  # empty answers included
    if blank is not None and blank >= COLLAPSE_BLANK_RATE:
        found.append((f"{blank:.0%} of the answers are blank (collapse guard {COLLAPSE_BLANK_RATE:.0%})",
                      _vs("blank", blank, b.whitespace_only_rate if b else None)))
    if a.distinct2 is not None and a.distinct2 < COLLAPSE_DISTINCT2:
        found.append((f"distinct-2 is {a.distinct2:.3f} (collapse guard {COLLAPSE_DISTINCT2})",
                      _vs("distinct-2", a.distinct2, base_d2)))
    # relative to the base
    if a.whitespace_ratio is not None and base_ws is not None and a.whitespace_ratio > base_ws + gate.whitespace_tolerance:
        found.append((f"whitespace {a.whitespace_ratio:.0%} vs base {base_ws:.0%} (tolerance "
                      f"+{gate.whitespace_tolerance:.0%})", _vs("whitespace", a.whitespace_ratio, base_ws)))
    if a.longest_repeat_run is not None and base_run is not None:
        limit = max(gate.repeat_run_factor * base_run, REPEAT_RUN_FLOOR)
        if a.longest_repeat_run > limit:
            found.append((f"one token repeats {a.longest_repeat_run} times in a row vs {base_run} for the base "
                          f"(max {gate.repeat_run_factor:g}x, at least {REPEAT_RUN_FLOOR})",
                          _vs("run", a.longest_repeat_run, base_run)))
    if a.distinct2 is not None and base_d2 is not None and a.distinct2 < base_d2 * gate.min_distinct2_ratio:
        found.append((f"distinct-2 {a.distinct2:.3f} vs base {base_d2:.3f} (min {gate.min_distinct2_ratio:g}x the base's)",
                      _vs("distinct-2", a.distinct2, base_d2)))
    # absolute, when the spec sets them
    if gate.max_whitespace_ratio is not None and a.whitespace_ratio is not None \
            and a.whitespace_ratio > gate.max_whitespace_ratio:
        found.append((f"{a.whitespace_ratio:.0%} of the output is whitespace (max {gate.max_whitespace_ratio:.0%})",
                      _vs("whitespace", a.whitespace_ratio, base_ws)))
    if gate.max_repeat_run is not None and a.longest_repeat_run is not None \
            and a.longest_repeat_run >= gate.max_repeat_run:
        found.append((f"one token repeats {a.longest_repeat_run} times in a row (max {gate.max_repeat_run - 1})",
                      _vs("run", a.longest_repeat_run, base_run)))
    if gate.min_distinct2 is not None and a.distinct2 is not None and a.distinct2 < gate.min_distinct2:
        found.append((f"distinct-2 is {a.distinct2:.3f} (min {gate.min_distinct2})",
                      _vs("distinct-2", a.distinct2, base_d2)))
    seen: set[str] = set()
    return [f for f in found if not (f[0] in seen or seen.add(f[0]))]


def _verdict(m: QualityGateResult, gate: QualityGate) -> tuple[bool, str, str, str]:
    a = m.adapter or GenerationMetrics()
    b = m.base
    degenerate = _degenerate(a, b, gate)
    if degenerate:
        return (False, GATE_DEGENERATE_OUTPUT, "degenerate generations: " + "; ".join(d[0] for d in degenerate),
                degenerate[0][1])
    ratio = m.eval_loss_ratio
    loss_vs = _vs("loss", m.eval_loss, m.base_eval_loss) if m.eval_loss is not None else None
    if ratio is not None and ratio > gate.max_eval_loss_ratio:
        return (
            False,
            GATE_WORSE_THAN_BASE,
            f"adapter eval loss {m.eval_loss:.4f} is not below base eval loss {m.base_eval_loss:.4f} "
            f"x {gate.max_eval_loss_ratio} (ratio {ratio:.3f})",
            loss_vs,
        )
    parse, base_parse = a.go_parse_rate, b.go_parse_rate if b else None
    parse_vs = _vs("parse", parse, base_parse)
    if parse is not None and base_parse is not None and parse < base_parse - gate.parse_rate_tolerance:
        return (False, GATE_LOW_PARSE_RATE,
                f"{parse:.0%} of the adapter's generations parse as Go vs {base_parse:.0%} of the base's "
                f"(tolerance -{gate.parse_rate_tolerance:.0%})", parse_vs)
    if gate.min_go_parse_rate is not None:
        if parse is None:
            m.notes.append("minGoParseRate not enforced: the Go parse check did not run")
        elif parse < gate.min_go_parse_rate:
            return (False, GATE_LOW_PARSE_RATE,
                    f"{parse:.0%} of generations parse as Go (min {gate.min_go_parse_rate:.0%})", parse_vs)
    if b is None and gate.compare_with_base:
        m.notes.append("relative rules not applied: no base model generations")
    parts = []
    if ratio is not None:
        parts.append(f"eval loss {m.eval_loss:.4f} vs base {m.base_eval_loss:.4f}")
    for label, model in (("adapter", a), ("base", b)):
        if model is not None and model.whitespace_ratio is not None:
            text = (f"{label}: whitespace {model.whitespace_ratio:.0%}, longest run {model.longest_repeat_run}, "
                    f"distinct-2 {_num(model.distinct2)}, EOS {model.eos_rate:.0%}")
            if model.go_parse_rate is not None:
                text += f", Go parse {model.go_parse_rate:.0%}"
            if model.type_check_rate is not None:
                text += f", type-check {model.type_check_rate:.0%} of {model.type_checkable}"
            parts.append(text)
    comparison = parse_vs if parse is not None else loss_vs
    return True, GATE_PASSED, "; ".join(parts) or "passed", comparison or "passed"
