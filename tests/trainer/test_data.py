"""Chat-template formatting, completion-only labels, EOS, truncation counting, splits."""

from __future__ import annotations

import json

import pytest

from golora.api.worker import REASON_INVALID_CONFIG
from golora_trainer.data import (
    IGNORE_INDEX,
    Formatter,
    Pair,
    completion_text,
    holdout,
    read_pairs,
    tokenize_pair,
    tokenize_pairs,
)
from golora_trainer.errors import TrainerError

FUNC = "func Max(a, b int) int {\n\tif a > b {\n\t\treturn a\n\t}\n\treturn b\n}"


@pytest.fixture(scope="module")
def tokenizer(tiny_random):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_random)


def test_labels_are_exactly_the_function_and_the_end_of_turn(tokenizer):
    fmt = Formatter(tokenizer, 512)
    ex = tokenize_pair(fmt, Pair("Max returns the larger of a and b.", FUNC))
    assert ex is not None and len(ex.labels) == len(ex.input_ids)
    # the prompt (system + user + assistant header) is masked ...
    assert all(t == IGNORE_INDEX for t in ex.labels[: ex.prompt_len])
    prompt = tokenizer.decode(ex.input_ids[: ex.prompt_len])
    assert prompt.endswith("<|im_start|>assistant\n") and "Max returns the larger" in prompt
    # ... and what is trained on is the Go function followed by the end-of-turn (EOS) token
    trained = completion_text(fmt, ex)
    assert trained.startswith(FUNC + "<|im_end|>")
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.eos_token_id in ex.labels
    assert ex.labels[ex.prompt_len :] == ex.input_ids[ex.prompt_len :]
    assert not ex.boundary_mismatch and not ex.eos_appended


def test_truncation_is_counted_and_keeps_the_prompt(tokenizer):
    long_body = "func Long() {\n" + "".join(f"\tx{i} := {i}\n" for i in range(200)) + "}"
    fmt = Formatter(tokenizer, 128)
    examples, stats = tokenize_pairs(fmt, [Pair("Long does many assignments.", long_body), Pair("Max.", FUNC)])
    assert stats.samples == 2 and stats.truncated == 1
    assert stats.tokens_truncated > 0
    assert all(len(e.input_ids) <= 128 for e in examples)
    cut = next(e for e in examples if e.truncated_tokens)
    assert cut.truncated_tokens == stats.tokens_truncated
    assert cut.prompt_len < 128 and any(t != IGNORE_INDEX for t in cut.labels)


def test_prompt_filling_the_budget_is_dropped_and_counted(tokenizer):
    fmt = Formatter(tokenizer, 48)
    huge_doc = " ".join(["word"] * 200)
    examples, stats = tokenize_pairs(fmt, [Pair(huge_doc, FUNC), Pair("Max.", FUNC)])
    assert stats.dropped == 1 and stats.samples == 1 and len(examples) == 1


def test_without_a_chat_template_eos_still_ends_the_completion(tokenizer):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer.name_or_path)
    tok.chat_template = None
    fmt = Formatter(tok, 512)
    assert not fmt.uses_chat_template
    ex = tokenize_pair(fmt, Pair("Max returns the max.", FUNC))
    assert ex.input_ids[-1] == tok.eos_token_id and ex.labels[-1] == tok.eos_token_id
    assert completion_text(fmt, ex).startswith(FUNC)


def test_read_pairs_counts_malformed_and_empty_and_caps(tmp_path):
    f = tmp_path / "d.jsonl"
    lines = [
        json.dumps({"instruction": "a doc", "output": "func A() {}"}),
        "not json",
        json.dumps({"instruction": "", "output": "func B() {}"}),
        json.dumps({"instruction": "x", "output": 3}),
        json.dumps({"instruction": "c doc", "output": "func C() {}", "meta": {"path": "c.go"}}),
        json.dumps({"instruction": "d doc", "output": "func D() {}"}),
    ]
    f.write_text("\n".join(lines) + "\n")
    pairs, stats = read_pairs(f)
    assert [p.instruction for p in pairs] == ["a doc", "c doc", "d doc"]
    assert (stats.lines, stats.malformed, stats.empty, stats.kept) == (6, 2, 1, 3)
    assert len(read_pairs(f, max_samples=2)[0]) == 2


def test_read_pairs_refuses_missing_or_useless_files(tmp_path):
    with pytest.raises(TrainerError) as exc:
        read_pairs(tmp_path / "missing.jsonl")
    assert exc.value.reason == REASON_INVALID_CONFIG
    (tmp_path / "bad.jsonl").write_text("{}\n[]\n")
    with pytest.raises(TrainerError):
        read_pairs(tmp_path / "bad.jsonl")


def test_holdout_is_deterministic_and_disjoint():
    pairs = [Pair(f"doc {i}", f"func F{i}() {{}}") for i in range(200)]
    train, evals = holdout(pairs, seed=7)
    assert len(evals) == 10 and len(train) == 190
    assert not set(evals) & set(train)
    assert set(holdout(list(reversed(pairs)), seed=7)[1]) == set(evals)  # file order does not matter
    assert set(holdout(pairs, seed=8)[1]) != set(evals)
