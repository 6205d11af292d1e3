"""Which floating-point recipe a run uses, decided from the device — and the fp16 fix-up.

bf16 needs compute capability >= 8.0 (Ampere). A T4 is 7.5: there the recipe is fp16
autocast with fp16 load and ``bnb_4bit_compute_dtype=float16``, ``fp16=True, bf16=False``,
and every trainable (LoRA) parameter in fp32. TRL's SFTTrainer casts the LoRA parameters of
a 4-bit model to bf16 while it is built; with ``fp16=True`` torch's GradScaler then fails with
the blog's ``"_amp_foreach_non_finite_check_and_unscale_cuda" not implemented for
'BFloat16'``. :func:`force_trainable_fp32` undoes that cast and must run *after* the trainer
exists (the optimizer is created inside ``train()``). On CPU everything is fp32.

``torch.cuda.is_bf16_supported()`` is not used: it counts emulation and says True on a T4.
"""

from __future__ import annotations

from dataclasses import dataclass

from golora.api.worker import REASON_INVALID_CONFIG

from .errors import TrainerError

BF16_MIN_MAJOR = 8  # Ampere and later
FP16_MIN_MAJOR = 7  # Volta/Turing: fp16 tensor cores


@dataclass(frozen=True)
class PrecisionPlan:
    """The resolved recipe. Dtypes are names (``"bfloat16"``) so deciding needs no torch."""

    name: str  # bf16 | fp16 | fp32: what goes into status
    load_dtype: str  # dtype of the non-quantized base weights
    compute_dtype: str  # bnb_4bit_compute_dtype
    fp16: bool  # SFTConfig(fp16=...): autocast fp16 + GradScaler
    bf16: bool  # SFTConfig(bf16=...): always passed explicitly (TRL defaults it to True)
    trainable_fp32: bool  # force LoRA params to fp32 after the trainer is built
    reason: str


def resolve_precision(requested: str, *, cuda: bool, capability: tuple[int, int] | None) -> PrecisionPlan:
    """Pick bf16 / fp16 / fp32 for ``requested`` (auto|bf16|fp16|fp32) on this device.

    - auto: bf16 on compute capability >= 8.0; the fp16 recipe on 7.x; fp32 on older GPUs and CPU.
    - bf16 on a GPU below 8.0 is refused (InvalidConfig) rather than silently emulated.
    - On CPU any request runs fp32 (autocast fp16 needs CUDA; the reason says so).
    """
    if requested not in ("auto", "bf16", "fp16", "fp32"):
        raise TrainerError(REASON_INVALID_CONFIG, f"unknown precision {requested!r}")
    if not cuda:
        why = "no CUDA device: fp32 on CPU"
        if requested not in ("auto", "fp32"):
            why += f" (requested {requested} needs a GPU)"
        return _fp32(why)
    major, minor = capability or (0, 0)
    cc = f"{major}.{minor}"
    if requested == "auto":
        if major >= BF16_MIN_MAJOR:
            return _bf16(f"compute capability {cc} >= 8.0 supports bf16")
        if major >= FP16_MIN_MAJOR:
            return _fp16(f"compute capability {cc} < 8.0 has no bf16: fp16 autocast with fp32 adapters")
        return _fp32(f"compute capability {cc} has neither bf16 nor fast fp16")
    if requested == "bf16":
        if major < BF16_MIN_MAJOR:
            raise TrainerError(
                REASON_INVALID_CONFIG,
                f"precision bf16 needs compute capability >= 8.0 (Ampere or newer); this GPU is {cc}. "
                "Use precision auto or fp16 (fp16 autocast with fp32 adapters).",
            )
        return _bf16(f"requested bf16 on compute capability {cc}")
    if requested == "fp16":
        return _fp16(f"requested fp16 on compute capability {cc}")
    return _fp32(f"requested fp32 on compute capability {cc}")


def _bf16(reason: str) -> PrecisionPlan:
    return PrecisionPlan("bf16", "bfloat16", "bfloat16", fp16=False, bf16=True, trainable_fp32=False, reason=reason)


def _fp16(reason: str) -> PrecisionPlan:
    return PrecisionPlan("fp16", "float16", "float16", fp16=True, bf16=False, trainable_fp32=True, reason=reason)


def _fp32(reason: str) -> PrecisionPlan:
    return PrecisionPlan("fp32", "float32", "float32", fp16=False, bf16=False, trainable_fp32=True, reason=reason)


def torch_dtype(name: str):
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def force_trainable_fp32(model) -> int:
    """Cast every trainable parameter to fp32 in place; returns how many were cast.

    Run after SFTTrainer is constructed and before ``train()`` (which creates the optimizer).
    Frozen parameters (4-bit weights, fp16 embeddings) are left alone.
    """
    import torch

    cast = 0
    for param in model.parameters():
        if param.requires_grad and param.dtype != torch.float32:
            param.data = param.data.float()
            cast += 1
    return cast


def trainable_dtypes(model) -> dict[str, int]:
    """Count trainable parameters (tensors) per dtype, e.g. ``{"torch.float32": 16}``."""
    out: dict[str, int] = {}
    for param in model.parameters():
        if param.requires_grad:
            out[str(param.dtype)] = out.get(str(param.dtype), 0) + 1
    return out
