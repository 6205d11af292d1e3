"""Quality-gate metrics and decisions (pure), and the Go parse check through golora-extract."""

from __future__ import annotations

import pytest

from golora.api.loratraining import (
    GATE_DEGENERATE_OUTPUT,
    GATE_LOW_PARSE_RATE,
    GATE_PASSED,
    GATE_WORSE_THAN_BASE,
    QualityGate,
    QualityGateResult,
)
from golora_trainer.gate import (
    Generation,
    decide,
    distinct_n,
    generation_metrics,
    go_parse_rate,
    longest_run,
    strip_fences,
    whitespace_ratio,
)

GO = "func Max(a, b int) int {\n\tif a > b {\n\t\treturn a\n\t}\n\treturn b\n}"


def gen(text: str, ids: list[int], eos: bool = True) -> Generation:
    return Generation(text, ids, eos)


def test_metric_primitives():
    assert whitespace_ratio("\t\t\t\t") == 1.0
    assert whitespace_ratio("") == 1.0
    assert whitespace_ratio("ab c") == 0.25
    assert longest_run([1, 2, 2, 2, 3, 3]) == 3 and longest_run([]) == 0
    assert distinct_n([5] * 100, 2) == pytest.approx(1 / 99)
    assert distinct_n([1, 2, 3, 4], 2) == 1.0 and distinct_n([1], 2) == 1.0
    assert strip_fences("```go\n" + GO + "\n```") == GO
    assert strip_fences(GO) == GO


def test_the_blogs_600_tabs_are_degenerate():
    tabs = gen("\t" * 600, [7] * 600, eos=False)
    m = generation_metrics([tabs, tabs])
    assert m.whitespace_ratio == 1.0 and m.whitespace_only_rate == 1.0
    assert m.longest_repeat_run == 600 and m.eos_rate == 0.0 and m.distinct2 < 0.01
    passed, reason, message = decide(m, QualityGate())
    assert not passed and reason == GATE_DEGENERATE_OUTPUT
    assert (m.passed, m.reason, m.message) == (passed, reason, message)  # recorded in the status model
    assert "whitespace" in message and "repeats 600" in message
    assert m.samples[0].startswith("\\t\\t")  # readable in status


def test_healthy_generations_pass_and_report_numbers():
    m = generation_metrics([gen(GO, list(range(30))), gen(GO, list(range(40)))])
    m.eval_loss, m.base_eval_loss = 0.8, 1.0
    passed, reason, message = decide(m, QualityGate())
    assert passed and reason == GATE_PASSED
    assert "eval loss 0.8000 vs base 1.0000" in message
    assert m.eos_rate == 1.0 and m.longest_repeat_run == 1


def test_worse_than_base_and_ratio_threshold():
    m = generation_metrics([gen(GO, list(range(30)))])
    m.eval_loss, m.base_eval_loss = 1.05, 1.0
    assert decide(m, QualityGate())[1] == GATE_WORSE_THAN_BASE
    assert decide(m, QualityGate(max_eval_loss_ratio=1.1))[0]


def test_low_parse_rate_only_when_required():
    m = generation_metrics([gen(GO, list(range(30)))])
    m.go_parse_rate = 0.4
    assert decide(m, QualityGate())[0]  # minGoParseRate defaults to 0
    assert decide(m, QualityGate(min_go_parse_rate=0.9))[1] == GATE_LOW_PARSE_RATE
    m.go_parse_rate = None
    passed, _, _ = decide(m, QualityGate(min_go_parse_rate=0.9))
    assert passed and any("not enforced" in n for n in m.notes)


def test_degenerate_wins_over_other_reasons():
    m = generation_metrics([gen(" " * 50, [3] * 50, eos=False)])
    m.eval_loss, m.base_eval_loss, m.go_parse_rate = 9.0, 1.0, 0.0
    assert decide(m, QualityGate(min_go_parse_rate=0.5))[1] == GATE_DEGENERATE_OUTPUT


def test_go_parse_rate_without_the_binary_is_null_with_a_note():
    rate, checked, note = go_parse_rate([GO], "golora-extract-definitely-missing")
    assert rate is None and checked == 0 and "not found" in note


def test_go_parse_rate_through_golora_extract(extractor_binary):
    if not extractor_binary:
        pytest.skip("golora-extract not available (no Go toolchain or extractor sources)")
    snippets = [GO, "```go\n" + GO + "\n```", "\t\t\t\t", "this is prose, not Go"]
    rate, checked, note = go_parse_rate(snippets, extractor_binary)
    assert note is None and checked == 4
    assert rate == pytest.approx(0.5)
    result = QualityGateResult(eval_loss=1.0, base_eval_loss=2.0)
    assert decide(result, QualityGate())[0] and result.eval_loss_ratio == 0.5 and result.passed
