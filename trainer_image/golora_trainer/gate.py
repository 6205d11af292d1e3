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
  ``golora-extract check --typecheck`` (``gocheck``).

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

import logging
from dataclasses import dataclass

from golora.api.loratraining import QualityGate
from golora.api.loratraining_status import GateSample, GenerationMetrics, QualityGateResult
from golora.api.worker import GATE_DEGENERATE_OUTPUT, GATE_LOW_PARSE_RATE, GATE_PASSED, GATE_WORSE_THAN_BASE

from .gocheck import GoCheck

log = logging.getLogger(__name__)

SAMPLE_CHARS = 160  # per generation shown in status
SAMPLES_SHOWN = 3

# Collapse guards: no working model writes like this, whatever its base does.
COLLAPSE_WHITESPACE_RATIO = 0.9  # of all generated characters
COLLAPSE_BLANK_RATE = 0.5  # generations that are empty or whitespace only
COLLAPSE_DISTINCT2 = 0.05  # one or two tokens over and over
# The relative repeat rule never fires below this run (a base that never repeats is no reason
# to fail an adapter with a run of 5 tabs of indentation).
REPEAT_RUN_FLOOR = 16


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
