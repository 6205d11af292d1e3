"""The quality gate: numbers that tell a working adapter from a collapsed one.

The blog's adapter had loss 7.76 and answered every prompt with 600 tab characters; nothing
stopped it from being served. After training, the gate compares adapter and base eval loss on
the same tokens and generates greedily for held-out prompts, measuring:

- whitespace ratio (share of whitespace characters; an empty output counts as all whitespace)
  and the share of outputs that are whitespace only,
- the longest run of one repeated token,
- distinct-1/2 of each generation's tokens (unique n-grams / n-grams, averaged over
  generations: within-output repetition, as in Welleck et al. 2019),
- EOS rate (generation stopped by the end-of-turn token, not by the token limit),
- Go parse rate of the generated code, through ``golora-extract check``.

Thresholds come from the spec's ``qualityGate``. Decision order: DegenerateOutput (the tabs
case), WorseThanBase, LowParseRate, else Passed.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass

from golora.api.loratraining import (
    GATE_DEGENERATE_OUTPUT,
    GATE_LOW_PARSE_RATE,
    GATE_PASSED,
    GATE_WORSE_THAN_BASE,
    QualityGate,
    QualityGateResult,
)

log = logging.getLogger(__name__)

SAMPLE_CHARS = 160  # per generation shown in status
SAMPLES_SHOWN = 3
_FENCE = re.compile(r"^\s*```[A-Za-z0-9_+-]*\s*\n(.*?)(?:\n\s*```\s*)?$", re.S)


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


def strip_fences(text: str) -> str:
    """Code inside a markdown fence (```go ... ```), else the text itself."""
    m = _FENCE.match(text)
    return m.group(1) if m else text


def generation_metrics(gens: list[Generation]) -> QualityGateResult:
    """The gate's numbers for the generations (the status model itself: one list of metrics);
    losses, the parse rate and the decision are filled in by the caller and ``decide``."""
    m = QualityGateResult(prompts=len(gens))
    if not gens:
        return m
    m.whitespace_ratio = sum(whitespace_ratio(g.text) for g in gens) / len(gens)
    m.whitespace_only_rate = sum(not g.text.strip() for g in gens) / len(gens)
    m.empty_rate = sum(not g.text for g in gens) / len(gens)
    m.longest_repeat_run = max(longest_run(g.token_ids) for g in gens)
    m.distinct1 = sum(distinct_n(g.token_ids, 1) for g in gens) / len(gens)
    m.distinct2 = sum(distinct_n(g.token_ids, 2) for g in gens) / len(gens)
    m.eos_rate = sum(g.ended_with_eos for g in gens) / len(gens)
    m.samples = [_shorten(g.text) for g in gens[:SAMPLES_SHOWN]]
    return m


def _shorten(text: str) -> str:
    text = text.encode("unicode_escape").decode("ascii") if text and not text.strip() else text
    return text if len(text) <= SAMPLE_CHARS else text[: SAMPLE_CHARS - 3] + "..."


def find_extractor(binary: str) -> str | None:
    """Absolute path of the golora-extract binary (a path or a name on PATH), or None."""
    if "/" in binary:
        return binary if shutil.which(binary) else None
    return shutil.which(binary)


def go_parse_rate(snippets: list[str], binary: str, timeout: float = 120.0) -> tuple[float | None, int, str | None]:
    """Parse rate of Go snippets via ``golora-extract check`` (JSONL ``{"code": ...}`` on stdin,
    ``{"total","parsed","rate"}`` on stdout). Returns (rate, checked, note); rate is None and the
    note says why when the check could not run."""
    exe = find_extractor(binary)
    if exe is None:
        return None, 0, f"Go parse check skipped: {binary} not found"
    if not snippets:
        return None, 0, "Go parse check skipped: no generations"
    payload = "".join(json.dumps({"code": strip_fences(s)}) + "\n" for s in snippets)
    try:
        proc = subprocess.run(
            [exe, "check"], input=payload, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, 0, f"Go parse check failed to run: {exc}"
    if proc.returncode != 0:
        return None, 0, f"Go parse check exited {proc.returncode}: {proc.stderr.strip()[:300]}"
    try:
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        out = json.loads(lines[-1])
        total, parsed = int(out["total"]), int(out["parsed"])
        rate = float(out.get("rate", parsed / total if total else 0.0))
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return None, 0, f"Go parse check output unreadable ({exc}): {proc.stdout[:200]!r}"
    return rate, total, None


def decide(m: QualityGateResult, gate: QualityGate) -> tuple[bool, str, str]:
    """(passed, reason, message) for the metrics under the spec's thresholds; also recorded in
    ``m`` with the eval-loss ratio it was judged on."""
    m.eval_loss_ratio = m.eval_loss / m.base_eval_loss if m.eval_loss is not None and m.base_eval_loss else None
    m.passed, m.reason, m.message = verdict = _verdict(m, gate)
    return verdict


def _verdict(m: QualityGateResult, gate: QualityGate) -> tuple[bool, str, str]:
    degenerate: list[str] = []
    if m.whitespace_ratio is not None and m.whitespace_ratio > gate.max_whitespace_ratio:
        degenerate.append(f"{m.whitespace_ratio:.0%} of the output is whitespace (max {gate.max_whitespace_ratio:.0%})")
    if m.longest_repeat_run is not None and m.longest_repeat_run >= gate.max_repeat_run:
        degenerate.append(f"one token repeats {m.longest_repeat_run} times in a row (max {gate.max_repeat_run - 1})")
    if m.distinct2 is not None and m.distinct2 < gate.min_distinct2:
        degenerate.append(f"distinct-2 is {m.distinct2:.3f} (min {gate.min_distinct2})")
    if degenerate:
        return False, GATE_DEGENERATE_OUTPUT, "degenerate generations: " + "; ".join(degenerate)
    ratio = m.eval_loss_ratio
    if ratio is not None and ratio > gate.max_eval_loss_ratio:
        return (
            False,
            GATE_WORSE_THAN_BASE,
            f"adapter eval loss {m.eval_loss:.4f} is not below base eval loss {m.base_eval_loss:.4f} "
            f"x {gate.max_eval_loss_ratio} (ratio {ratio:.3f})",
        )
    if gate.min_go_parse_rate > 0:
        if m.go_parse_rate is None:
            m.notes.append("minGoParseRate not enforced: the Go parse check did not run")
        elif m.go_parse_rate < gate.min_go_parse_rate:
            return (
                False,
                GATE_LOW_PARSE_RATE,
                f"{m.go_parse_rate:.0%} of generations parse as Go (min {gate.min_go_parse_rate:.0%})",
            )
    parts = []
    if ratio is not None:
        parts.append(f"eval loss {m.eval_loss:.4f} vs base {m.base_eval_loss:.4f}")
    if m.whitespace_ratio is not None:
        parts.append(f"whitespace {m.whitespace_ratio:.0%}, longest run {m.longest_repeat_run}, "
                     f"distinct-2 {m.distinct2:.2f}, EOS {m.eos_rate:.0%}")
    if m.go_parse_rate is not None:
        parts.append(f"Go parse {m.go_parse_rate:.0%}")
    return True, GATE_PASSED, "; ".join(parts) or "passed"
