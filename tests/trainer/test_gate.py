"""Quality-gate metrics and decisions (pure: the adapter judged against the base), and the Go
parse / type checks through golora-extract (golora_trainer.gocheck)."""

from __future__ import annotations

import json

import pytest

from golora.api.loratraining import QualityGate
from golora.api.loratraining_status import GenerationMetrics, QualityGateResult
from golora.api.worker import GATE_DEGENERATE_OUTPUT, GATE_LOW_PARSE_RATE, GATE_PASSED, GATE_WORSE_THAN_BASE
from golora_trainer import gosrc
from golora_trainer.gate import (
    Generation,
    decide,
    distinct_n,
    generation_metrics,
    longest_run,
    side_by_side,
    whitespace_ratio,
)
from golora_trainer.gocheck import apply_checks, go_check, go_checks, go_parse_rate, pair_metas, strip_fences

from .conftest import DATASET

GO = "func Max(a, b int) int {\n\tif a > b {\n\t\treturn a\n\t}\n\treturn b\n}"
GO2 = "func Min(a, b int) int {\n\tif a < b {\n\t\treturn a\n\t}\n\treturn b\n}"


def gen(text: str, ids: list[int], eos: bool = True) -> Generation:
    return Generation(text, ids, eos)


def healthy(n: int = 2) -> list[Generation]:
    return [gen(GO if i % 2 == 0 else GO2, list(range(10 * i, 10 * i + 30))) for i in range(n)]


def result(adapter: GenerationMetrics, base: GenerationMetrics | None = None, loss=(0.8, 1.0)) -> QualityGateResult:
    return QualityGateResult(adapter=adapter, base=base, eval_loss=loss[0], base_eval_loss=loss[1],
                             prompts=adapter.prompts)


def test_metric_primitives():
    assert whitespace_ratio("\t\t\t\t") == 1.0
    assert whitespace_ratio("") == 1.0
    assert whitespace_ratio("ab c") == 0.25
    assert longest_run([1, 2, 2, 2, 3, 3]) == 3 and longest_run([]) == 0
    assert distinct_n([5] * 100, 2) == pytest.approx(1 / 99)
    assert distinct_n([1, 2, 3, 4], 2) == 1.0 and distinct_n([1], 2) == 1.0
    assert strip_fences("```go\n" + GO + "\n```") == GO
    assert strip_fences(GO) == GO


def test_empty_answers_do_not_count_as_diverse():
    """A base that answers nothing has no bigrams: it must not look perfectly diverse (distinct-2 is
    averaged over the generations that have one), or every adapter would be 'worse'."""
    m = generation_metrics([gen("", [], eos=True), gen(GO, [1, 2, 1, 2, 1, 2])])
    assert m.distinct2 == pytest.approx(2 / 5) and m.empty_rate == 0.5 and m.whitespace_only_rate == 0.5
    assert generation_metrics([gen("", [])]).distinct2 is None


def test_the_blogs_600_tabs_fail_on_the_relative_rule_and_the_absolute_guard():
    tabs = gen("\t" * 600, [7] * 600, eos=False)
    adapter = generation_metrics([tabs, tabs])
    assert adapter.whitespace_ratio == 1.0 and adapter.whitespace_only_rate == 1.0
    assert adapter.longest_repeat_run == 600 and adapter.eos_rate == 0.0 and adapter.distinct2 < 0.01
    m = result(adapter, generation_metrics(healthy()))
    passed, reason, message = decide(m, QualityGate())
    assert not passed and reason == GATE_DEGENERATE_OUTPUT
    assert (m.passed, m.reason, m.message) == (passed, reason, message)  # recorded in the status model
    assert "collapse guard" in message  # absolute
    assert "vs base" in message and "repeats 600 times in a row vs 1 for the base" in message  # relative
    assert m.comparison.startswith("whitespace 1.00 vs 0.")

    # a base that collapsed as well is no excuse: the absolute guard fails the adapter anyway
    m = result(generation_metrics([tabs, tabs]), generation_metrics([tabs, tabs]))
    passed, reason, message = decide(m, QualityGate())
    assert not passed and reason == GATE_DEGENERATE_OUTPUT
    assert "collapse guard" in message and "vs base" not in message
    # and without base generations at all
    assert decide(result(generation_metrics([tabs])), QualityGate())[1] == GATE_DEGENERATE_OUTPUT


def test_clearly_worse_than_the_base_is_degenerate_below_the_collapse_guards():
    """40% whitespace is no collapse, but it is where a base that writes 20% is clearly better."""
    base = GenerationMetrics(prompts=8, whitespace_ratio=0.2, whitespace_only_rate=0, longest_repeat_run=6,
                             distinct2=0.7, eos_rate=1.0)
    spaced = base.model_copy(update={"whitespace_ratio": 0.4})
    m = result(spaced, base)
    assert decide(m, QualityGate())[1] == GATE_DEGENERATE_OUTPUT
    assert "whitespace 40% vs base 20% (tolerance +10%)" in m.message and m.comparison == "whitespace 0.40 vs 0.20"
    assert decide(result(spaced, base), QualityGate(whitespace_tolerance=0.25))[0]
    assert decide(result(spaced), QualityGate())[0]  # alone, nothing says 40% is bad

    repeats = base.model_copy(update={"longest_repeat_run": 40})
    m = result(repeats, base)
    assert decide(m, QualityGate())[1] == GATE_DEGENERATE_OUTPUT and m.comparison == "run 40 vs 6"
    assert decide(result(base.model_copy(update={"longest_repeat_run": 15}), base), QualityGate())[0]  # floor 16

    samey = base.model_copy(update={"distinct2": 0.3})
    m = result(samey, base)
    assert decide(m, QualityGate())[1] == GATE_DEGENERATE_OUTPUT and m.comparison == "distinct-2 0.30 vs 0.70"
    assert "min 0.5x the base's" in m.message
    # code repeats some bigrams ("return nil"): the tiny model's adapter is at 0.53 vs 0.68 and passes
    assert decide(result(base.model_copy(update={"distinct2": 0.53}), base.model_copy(update={"distinct2": 0.68})),
                  QualityGate())[0]


def test_absolute_thresholds_stay_available():
    base = GenerationMetrics(prompts=4, whitespace_ratio=0.3, whitespace_only_rate=0, longest_repeat_run=20,
                             distinct2=0.5, eos_rate=1.0, go_parse_rate=0.2)
    same = base.model_copy()
    assert decide(result(same, base), QualityGate())[0]
    assert decide(result(same, base), QualityGate(max_whitespace_ratio=0.25))[1] == GATE_DEGENERATE_OUTPUT
    assert decide(result(same, base), QualityGate(max_repeat_run=16))[1] == GATE_DEGENERATE_OUTPUT
    assert decide(result(same, base), QualityGate(min_distinct2=0.6))[1] == GATE_DEGENERATE_OUTPUT
    assert decide(result(same, base), QualityGate(min_go_parse_rate=0.5))[1] == GATE_LOW_PARSE_RATE
    alone = result(same.model_copy())  # compareWithBase: false -> no base metrics, no "vs"
    assert decide(alone, QualityGate(max_repeat_run=16))[1] == GATE_DEGENERATE_OUTPUT and alone.comparison == "run 20"
    alone = result(same.model_copy())
    assert decide(alone, QualityGate(compare_with_base=False))[0] and alone.comparison == "parse 0.20"


def test_healthy_generations_pass_and_report_both_models():
    adapter, base = generation_metrics(healthy()), generation_metrics(healthy())
    adapter.go_parse_rate, base.go_parse_rate = 0.62, 0.48
    adapter.type_check_rate, adapter.type_checkable, base.type_check_rate, base.type_checkable = 0.5, 4, 0.25, 4
    m = result(adapter, base)
    passed, reason, message = decide(m, QualityGate())
    assert passed and reason == GATE_PASSED
    assert m.comparison == "parse 0.62 vs 0.48"  # what kubectl get lt shows next to the verdict
    assert "eval loss 0.8000 vs base 1.0000" in message
    assert "adapter: whitespace" in message and "base: whitespace" in message and "type-check 50% of 4" in message
    assert adapter.eos_rate == 1.0 and adapter.longest_repeat_run == 1


def test_worse_than_base_and_ratio_threshold():
    m = result(generation_metrics(healthy()), generation_metrics(healthy()), loss=(1.05, 1.0))
    assert decide(m, QualityGate())[1] == GATE_WORSE_THAN_BASE and m.comparison == "loss 1.05 vs 1.00"
    assert decide(m, QualityGate(max_eval_loss_ratio=1.1))[0]


def test_parse_rate_below_the_base_fails_low_parse_rate():
    base = generation_metrics(healthy())
    base.go_parse_rate = 0.6
    worse = generation_metrics(healthy())
    worse.go_parse_rate = 0.4
    m = result(worse, base)
    assert decide(m, QualityGate())[1] == GATE_LOW_PARSE_RATE
    assert m.comparison == "parse 0.40 vs 0.60" and "40% of the adapter's generations parse as Go vs 60%" in m.message
    assert decide(result(worse, base), QualityGate(parse_rate_tolerance=0.25))[0]
    close = worse.model_copy(update={"go_parse_rate": 0.55})
    assert decide(result(close, base), QualityGate())[0]  # within the default tolerance of 0.1
    assert decide(result(close, base), QualityGate(parse_rate_tolerance=0))[1] == GATE_LOW_PARSE_RATE
    # no parse check at all: nothing to compare, the absolute floor is reported as not enforced
    none = generation_metrics(healthy())
    m = result(none, generation_metrics(healthy()))
    assert decide(m, QualityGate(min_go_parse_rate=0.9))[0] and any("not enforced" in n for n in m.notes)


def test_degenerate_wins_over_other_reasons():
    adapter = generation_metrics([gen(" " * 50, [3] * 50, eos=False)])
    adapter.go_parse_rate = 0.0
    base = generation_metrics(healthy())
    base.go_parse_rate = 1.0
    assert decide(result(adapter, base, loss=(9.0, 1.0)), QualityGate())[1] == GATE_DEGENERATE_OUTPUT


def test_go_parse_rate_without_the_binary_is_null_with_a_note():
    rate, checked, note = go_parse_rate([GO], "golora-extract-definitely-missing")
    assert rate is None and checked == 0 and "not found" in note
    checks, notes = go_checks([[GO], [GO2]], "golora-extract-definitely-missing", [[None], [None]])
    assert [c.parse_rate for c in checks] == [None, None] and "not found" in notes[0]


def test_go_parse_rate_through_golora_extract(extractor_binary):
    if not extractor_binary:
        pytest.skip("golora-extract not available (no Go toolchain or extractor sources)")
    snippets = [GO, "```go\n" + GO + "\n```", "\t\t\t\t", "this is prose, not Go"]
    rate, checked, note = go_parse_rate(snippets, extractor_binary)
    assert note is None and checked == 4
    assert rate == pytest.approx(0.5)


def test_an_adapter_that_writes_prose_fails_low_parse_rate_through_the_real_check(extractor_binary):
    if not extractor_binary:
        pytest.skip("golora-extract not available")
    base = [gen(GO, list(range(30))), gen(GO2, list(range(30, 60))), gen(GO, list(range(60, 90)))]
    prose = [gen("Max returns the larger of a and b, which it computes by comparing them.", list(range(i, i + 20)))
             for i in range(3)]
    prose[0] = gen(GO, list(range(30)))
    (a_check, b_check), notes = go_checks([[g.text for g in prose], [g.text for g in base]], extractor_binary,
                                          [[None] * 3, [None] * 3])
    assert b_check.parse_rate == 1.0 and a_check.parse_rate == pytest.approx(1 / 3)
    assert a_check.parsed == [True, False, False] and b_check.parsed == [True, True, True]
    adapter_m, base_m = generation_metrics(prose), generation_metrics(base)
    apply_checks(adapter_m, a_check)
    apply_checks(base_m, b_check)
    m = result(adapter_m, base_m)
    assert decide(m, QualityGate())[1] == GATE_LOW_PARSE_RATE and m.comparison == "parse 0.33 vs 1.00"
    samples = side_by_side(["Max returns the larger of a and b."] * 3, prose, base, a_check, b_check)
    assert samples[0].adapter_parses is True and samples[1].adapter_parses is False and samples[1].base_parses
    assert samples[1].prompt.startswith("Max returns") and samples[1].base.startswith("func Min")


def _stdlib_pairs(go_store, n: int) -> list[dict]:
    if not (go_store / "SOURCE").read_text().startswith("golora-extract"):
        pytest.skip("the test dataset was not made by golora-extract (no meta)")
    rows = [json.loads(line) for line in (go_store / DATASET / "eval.jsonl").read_text().splitlines()]
    return rows[:n]


def test_type_check_of_stdlib_pairs_through_golora_extract(go_store, extractor_binary):
    """Original standard library functions type-check in their package (100%); one with a type
    error in its body does not; a pair from elsewhere is only parsed."""
    if not extractor_binary or gosrc.goroot() is None:
        pytest.skip("golora-extract or GOROOT not available")
    rows = _stdlib_pairs(go_store, 12)
    metas = pair_metas(go_store / DATASET / "eval.jsonl")
    originals = [r["output"] for r in rows]
    meta_list = [metas[(r["instruction"], r["output"])] for r in rows]
    check = go_check(originals, extractor_binary, meta_list, goroot=gosrc.goroot())
    assert check.notes == [] and check.parse_rate == 1.0
    assert check.type_checks == ["ok"] * len(rows), check.type_details
    assert check.type_counts() == (len(rows), len(rows))

    # the first function with a type error at the end of its body
    broken = originals[0].rstrip()[:-1] + '\tvar _ int = "not an int"\n}'
    elsewhere = {**meta_list[0], "package": "github.com/example/nowhere", "path": "nowhere.go", "repo": "example"}
    check = go_check([broken, originals[0]], extractor_binary, [meta_list[0], elsewhere], goroot=gosrc.goroot())
    assert check.type_checks == ["error", "skipped"], check.type_details
    m = GenerationMetrics()
    apply_checks(m, check)
    assert (m.type_checkable, m.type_check_passed, m.type_check_rate) == (1, 0, 0.0)


def test_kubectl_columns_show_the_verdict_with_its_comparison_and_wide_adds_type_check_rates():
    from golora.api.loratraining import KIND
    from golora.api.loratraining_status import LoraTrainingStatus

    cols = {c.name: c for c in KIND.printer_columns}
    names = [c.name for c in KIND.printer_columns if c.priority == 0]
    assert names[names.index("Gate") + 1] == "Vs-Base"  # "Passed  parse 0.62 vs 0.48"
    assert cols["Vs-Base"].json_path == ".status.result.qualityGate.comparison"
    assert (cols["Typecheck"].priority, cols["Base-Typecheck"].priority) == (1, 1)  # -o wide
    assert cols["Typecheck"].json_path.endswith(".qualityGate.adapter.typeCheckRate")
    assert cols["Base-Typecheck"].json_path.endswith(".qualityGate.base.typeCheckRate")
    # every path is a field the status schema declares (undeclared status fields are pruned)
    status = LoraTrainingStatus.model_validate({"result": {"qualityGate": {
        "comparison": "parse 0.62 vs 0.48", "adapter": {"typeCheckRate": 0.5}, "base": {"typeCheckRate": 0.25}}}})
    gate = status.model_dump(by_alias=True, exclude_none=True)["result"]["qualityGate"]
    assert gate["adapter"]["typeCheckRate"] == 0.5 and gate["base"]["typeCheckRate"] == 0.25


def test_default_rules_are_relative_and_absolute_thresholds_are_off():
    g = QualityGate()
    assert g.compare_with_base and g.parse_rate_tolerance == 0.1 and g.max_eval_loss_ratio == 1.0
    assert (g.max_whitespace_ratio, g.max_repeat_run, g.min_distinct2, g.min_go_parse_rate) == (None,) * 4
    assert QualityGate.model_validate({"parseRateTolerance": 0.2, "minGoParseRate": 0.5}).min_go_parse_rate == 0.5


def test_without_a_goroot_the_type_check_is_a_note_and_the_parse_check_still_runs(extractor_binary, tmp_path):
    if not extractor_binary:
        pytest.skip("golora-extract not available")
    meta = {"repo": "go-src/src", "path": "strings/strings.go", "package": "strings", "name": "ToUpper"}
    check = go_check([GO, "prose"], extractor_binary, [meta, meta], goroot=tmp_path)
    assert check.parse_rate == 0.5 and check.parsed == [True, False]
    assert check.type_checks == ["skipped", "skipped"] and check.type_counts() == (0, 0)
    assert check.notes == [f"Go type check skipped: {tmp_path} is not a GOROOT: no src/builtin"]
    m = GenerationMetrics()
    apply_checks(m, check)
    assert m.type_checkable == 0 and m.type_check_rate is None and m.go_parse_rate == 0.5
