"""The micro-batch estimator against DESIGN.md's T4 figures for Qwen2.5-7B."""

from __future__ import annotations

import pytest

from golora_trainer.memory import (
    GB,
    GIB,
    LOSS_FUSED,
    LOSS_PLAIN,
    QWEN25_7B,
    ModelShape,
    Recipe,
    accumulation_for,
    activation_bytes_per_token,
    estimate,
    max_tokens,
    plan_micro_batch,
    weight_bytes,
)

T4_BYTES = 14.75 * GIB  # what torch reports for a 16 GB T4
T4_LIMIT = 14.5 * GIB


def test_qwen25_7b_shape_figures():
    s = QWEN25_7B
    assert s.quantizable_params == pytest.approx(6.525e9, rel=0.01)
    assert s.embedding_params == pytest.approx(1.09e9, rel=0.01)
    assert s.lora_params(16, ["q_proj", "k_proj", "v_proj", "o_proj"]) == 10_092_544
    assert s.lora_params(16, ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]) == 40_370_176


def test_weights_adapter_and_activations_match_design():
    s = QWEN25_7B
    w = weight_bytes(s, quantized=True, double_quant=True)
    assert 5.5 * GB <= w <= 5.9 * GB  # observed 5.76 GB (Unsloth T4 notebook)
    est = estimate(s, 0)
    assert est.adapter == pytest.approx(0.16 * GB, rel=0.02)
    assert activation_bytes_per_token(s, gradient_checkpointing=True) == pytest.approx(0.45e6, rel=0.05)
    assert 6.5e6 <= activation_bytes_per_token(s, gradient_checkpointing=False) <= 9e6
    plain = estimate(s, 1000, Recipe(loss=LOSS_PLAIN)).logits / 1000
    assert 1.5e6 <= plain <= 2.4e6  # 1.5-2.4 MB/token with a plain loss


def test_plain_loss_on_t4_fits_one_2048_sequence_but_not_4x1024():
    # DESIGN.md: T_max ~2.1k-3.1k tokens with the nll row; 4 x 1024 is the blog's OOM.
    cap = max_tokens(T4_BYTES, QWEN25_7B, Recipe(loss=LOSS_PLAIN), gradient_checkpointing=True)
    assert 2048 <= cap < 4096
    plan = plan_micro_batch(T4_BYTES, QWEN25_7B, 2048, 16, Recipe(loss=LOSS_PLAIN))
    assert plan.micro_batch_size == 1 and plan.gradient_accumulation_steps == 16
    assert plan.gradient_checkpointing
    assert plan.estimate.total <= T4_LIMIT


def test_t4_auto_picks_a_small_micro_batch_that_fits_under_14_5_gib():
    plan = plan_micro_batch(T4_BYTES, QWEN25_7B, 2048, 16, Recipe(loss=LOSS_FUSED))
    assert 1 <= plan.micro_batch_size <= 4
    assert plan.gradient_checkpointing  # a T4 cannot hold 7 MB/token of activations
    assert plan.micro_batch_size * plan.gradient_accumulation_steps == 16  # effective batch kept
    assert plan.estimate.total <= T4_LIMIT
    # and one step more would not fit the usable 88 %
    bigger = estimate(QWEN25_7B, (2 * plan.micro_batch_size) * 2048, Recipe(loss=LOSS_FUSED))
    assert bigger.total > 0.88 * T4_BYTES or plan.micro_batch_size * 2 > 4


def test_blog_batch_4_is_flagged_with_a_plain_loss():
    plan = plan_micro_batch(T4_BYTES, QWEN25_7B, 1024, 16, Recipe(loss=LOSS_PLAIN), requested=4)
    assert plan.micro_batch_size == 4
    assert plan.notes and "may run out of memory" in plan.notes[0]


def test_big_gpu_turns_gradient_checkpointing_off():
    plan = plan_micro_batch(139.8 * GIB, QWEN25_7B, 1024, 16)
    assert not plan.gradient_checkpointing
    assert plan.micro_batch_size >= 4
    assert plan.estimate.total <= 0.88 * 139.8 * GIB


def test_operator_override_is_kept():
    plan = plan_micro_batch(T4_BYTES, QWEN25_7B, 2048, 16, requested=2)
    assert (plan.micro_batch_size, plan.gradient_accumulation_steps) == (2, 8)


@pytest.mark.parametrize(("micro", "effective", "want"), [
    (6, 16, (4, 4)), (16, 16, (16, 1)), (1, 16, (1, 16)), (5, 12, (4, 3)), (7, 7, (7, 1)), (20, 16, (16, 1)),
    (3, 16, (2, 8)), (9, 10, (5, 2)),
])
def test_accumulation_keeps_the_effective_batch(micro, effective, want):
    got = accumulation_for(micro, effective)
    assert got == want
    assert got[0] * got[1] >= effective


def test_model_shape_from_config_dict():
    cfg = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 4, "num_attention_heads": 4,
           "num_key_value_heads": 2, "vocab_size": 3000, "tie_word_embeddings": True}
    s = ModelShape.from_config(cfg)
    assert (s.head_dim, s.kv_dim, s.embedding_params) == (32, 64, 384_000)
