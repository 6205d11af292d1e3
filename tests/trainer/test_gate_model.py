"""The quality gate on the tiny Go model: base (adapter disabled) and adapter generations for the
same held-out prompts, each model's metrics matching a direct computation."""

from __future__ import annotations

import json

import pytest

from golora.api.loratraining import QualityGate
from golora_trainer import gosrc

from .conftest import DATASET

pytestmark = pytest.mark.train


def _pairs(go_store, n):
    rows = [json.loads(line) for line in (go_store / DATASET / "eval.jsonl").read_text().splitlines()]
    return rows[:n]


def test_base_and_adapter_metrics_on_the_tiny_model(tiny_base, go_store, extractor_binary):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from golora_trainer.data import Formatter
    from golora_trainer.evaluate import generate, run_gate
    from golora_trainer.gate import generation_metrics
    from golora_trainer.gocheck import go_checks

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_base)
    model = AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                                            lora_dropout=0.0, task_type="CAUSAL_LM"))
    with torch.no_grad():  # a fresh LoRA is the identity (B = 0): make the adapter differ from its base
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    fmt = Formatter(tok, 512)
    rows = _pairs(go_store, 6)
    prompts = [fmt.prompt_ids(r["instruction"]) for r in rows]
    metas = [r.get("meta") for r in rows]
    binary = extractor_binary or "golora-extract-not-installed"
    opts = dict(eos_ids=[fmt.eos_token_id], pad_id=tok.pad_token_id, precision="fp32")
    gate = QualityGate(prompts=6, max_new_tokens=48)

    result, adapter_gens = run_gate(
        peft, tok, prompts, [r["instruction"] for r in rows], metas, gate=gate, batch_size=4,
        eval_loss=1.0, base_eval_loss=1.2, extractor_binary=binary, goroot=gosrc.goroot(), **opts)

    # directly: the adapter, then the plain base model (no PEFT wrapper at all)
    direct_adapter = generate(peft, tok, prompts, max_new_tokens=48, batch_size=4, **opts)
    with peft.disable_adapter():
        direct_base = generate(peft, tok, prompts, max_new_tokens=48, batch_size=4, **opts)
    assert [g.token_ids for g in adapter_gens] == [g.token_ids for g in direct_adapter]
    assert [g.token_ids for g in direct_base] != [g.token_ids for g in direct_adapter]  # they differ

    for got, gens in ((result.adapter, direct_adapter), (result.base, direct_base)):
        want = generation_metrics(gens)
        for key in ("prompts", "generated_tokens", "whitespace_ratio", "whitespace_only_rate", "empty_rate",
                    "longest_repeat_run", "distinct1", "distinct2", "eos_rate"):
            assert getattr(got, key) == pytest.approx(getattr(want, key)), key
    assert result.prompts == 6 and result.eval_loss_ratio == pytest.approx(1 / 1.2)
    assert result.reason and result.comparison and result.passed is not None
    assert len(result.samples) == 3
    assert result.samples[0].base == _short(direct_base[0].text) and result.samples[0].adapter == _short(
        direct_adapter[0].text)

    if extractor_binary:
        (a_check, b_check), _ = go_checks([[g.text for g in direct_adapter], [g.text for g in direct_base]],
                                          extractor_binary, [metas, metas], goroot=gosrc.goroot())
        assert result.adapter.go_parse_rate == a_check.parse_rate and result.base.go_parse_rate == b_check.parse_rate
        assert result.adapter.go_parse_checked == result.base.go_parse_checked == 6
        if gosrc.goroot() is not None and all(metas):
            # stdlib pairs: every prompt is type-checkable, for both models
            assert result.adapter.type_checkable == result.base.type_checkable == 6
            assert result.adapter.type_check_rate == a_check.type_counts()[1] / 6
            assert result.base.type_check_rate == b_check.type_counts()[1] / 6
            assert result.samples[0].adapter_type_check in ("ok", "error")
        print(f"\ntiny model, 6 held-out stdlib prompts: parse adapter {result.adapter.go_parse_rate} vs base "
              f"{result.base.go_parse_rate}; type-check adapter {result.adapter.type_check_rate} vs base "
              f"{result.base.type_check_rate}; verdict {result.reason} ({result.comparison})")
    else:
        assert result.adapter.go_parse_rate is None and any("not found" in n for n in result.notes)

    # compareWithBase: false generates once, and judges without the relative rules
    solo, _ = run_gate(peft, tok, prompts, [r["instruction"] for r in rows], metas,
                       gate=QualityGate(prompts=6, max_new_tokens=48, compare_with_base=False), batch_size=4,
                       eval_loss=1.0, base_eval_loss=1.2, extractor_binary=binary, **opts)
    assert solo.base is None and solo.samples[0].base is None
    assert solo.adapter.whitespace_ratio == pytest.approx(result.adapter.whitespace_ratio)


def _short(text):
    from golora_trainer.gate import shorten

    return shorten(text)
