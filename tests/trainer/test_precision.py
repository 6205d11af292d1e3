"""precision: auto resolves from the device; the T4 path keeps trainable parameters in fp32."""

from __future__ import annotations

import pytest

from golora.api.worker import REASON_INVALID_CONFIG
from golora_trainer.errors import TrainerError
from golora_trainer.precision import force_trainable_fp32, resolve_precision, trainable_dtypes


@pytest.mark.parametrize(
    ("capability", "name", "fp16", "bf16", "compute", "trainable_fp32"),
    [
        ((7, 5), "fp16", True, False, "float16", True),  # T4: the blog's GPU
        ((7, 0), "fp16", True, False, "float16", True),  # V100
        ((8, 0), "bf16", False, True, "bfloat16", False),  # A100
        ((8, 6), "bf16", False, True, "bfloat16", False),  # RTX 3060
        ((9, 0), "bf16", False, True, "bfloat16", False),  # H100/H200
        ((6, 1), "fp32", False, False, "float32", True),  # P40: no bf16, slow fp16
    ],
)
def test_auto_precision_from_compute_capability(capability, name, fp16, bf16, compute, trainable_fp32):
    plan = resolve_precision("auto", cuda=True, capability=capability)
    assert (plan.name, plan.fp16, plan.bf16, plan.compute_dtype, plan.trainable_fp32) == (
        name, fp16, bf16, compute, trainable_fp32)
    assert plan.load_dtype == compute


def test_t4_recipe_is_fp16_load_and_compute_never_bf16():
    plan = resolve_precision("auto", cuda=True, capability=(7, 5))
    assert plan.load_dtype == "float16" and plan.compute_dtype == "float16"
    assert plan.fp16 and not plan.bf16  # bf16 passed explicitly False: TRL defaults it to True


@pytest.mark.parametrize("requested", ["auto", "fp32", "bf16", "fp16"])
def test_cpu_is_fp32_with_bf16_explicitly_off(requested):
    plan = resolve_precision(requested, cuda=False, capability=None)
    assert plan.name == "fp32" and plan.bf16 is False and plan.fp16 is False
    assert plan.load_dtype == "float32"


def test_bf16_on_a_t4_is_refused_not_emulated():
    with pytest.raises(TrainerError) as exc:
        resolve_precision("bf16", cuda=True, capability=(7, 5))
    assert exc.value.reason == REASON_INVALID_CONFIG
    assert "7.5" in exc.value.message and "8.0" in exc.value.message


def test_explicit_requests_on_capable_gpus():
    assert resolve_precision("fp16", cuda=True, capability=(9, 0)).name == "fp16"
    assert resolve_precision("fp32", cuda=True, capability=(9, 0)).name == "fp32"
    assert resolve_precision("bf16", cuda=True, capability=(8, 9)).name == "bf16"


def test_force_trainable_fp32_undoes_a_bf16_cast_and_leaves_frozen_weights():
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    model[0].weight.requires_grad_(False)
    model[0].bias.requires_grad_(False)
    model.half()  # frozen base in fp16
    for p in model[1].parameters():  # "LoRA" params cast to bf16, as TRL does for 4-bit models
        p.data = p.data.to(torch.bfloat16)
    assert trainable_dtypes(model) == {"torch.bfloat16": 2}
    assert force_trainable_fp32(model) == 2
    assert trainable_dtypes(model) == {"torch.float32": 2}
    assert model[0].weight.dtype == torch.float16  # frozen weights untouched
