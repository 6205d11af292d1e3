"""TRL's SFTTrainer as golora builds it: the memory-saving loss available, Liger's kernels, the
SFTConfig of this transformers/TRL, and training in length-bucketed order (``batching``)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import logging
from pathlib import Path

from golora.api.loratraining import LoraTrainingSpec
from golora.api.worker import REASON_INVALID_CONFIG

from . import settings
from .batching import LengthBucketSampler, padding_efficiency
from .errors import TrainerError
from .memory import LOSS_FUSED, LOSS_PLAIN
from .packing import PackedCollator, packing_requested, use_varlen_attention
from .precision import force_trainable_fp32, trainable_dtypes

log = logging.getLogger(__name__)

LOSS_LIGER = "liger"
MAX_GRAD_NORM = 0.3  # the QLoRA reference value
CHECKPOINTS_KEPT = 2
PAD_MULTIPLE_CUDA = 8  # tensor-core friendly shapes
# Benchmarks only (settings.layer_kernels == "liger"): Liger's fused RMSNorm, SwiGLU and RoPE
# kernels (CUDA, liger-kernel installed) next to TRL's fused LM head, measured before they
# become a default.
LIGER_LAYER_KERNELS = {"rms_norm": True, "swiglu": True, "rope": True,
                       "cross_entropy": False, "fused_linear_cross_entropy": False}


def liger_installed() -> bool:
    return importlib.util.find_spec("liger_kernel") is not None


def loss_implementation() -> str:
    """The memory-saving loss available: TRL's fused chunked LM head (TRL >= 1.x, its default),
    else Liger's fused linear cross-entropy when liger-kernel is importable, else plain."""
    try:
        from trl.trainer.utils import add_fused_lm_head  # noqa: F401

        return LOSS_FUSED
    except ImportError:
        pass
    if liger_installed():
        return LOSS_LIGER
    return LOSS_PLAIN


def liger_arguments(loss_impl: str, *, cuda: bool, requested: str | None, available: bool) -> dict:
    """SFTConfig arguments for Liger Kernel.

    Its fused linear cross-entropy when that is the loss (TRL without the fused LM head); its
    layer kernels when ``requested`` is "liger", there is a GPU (they are Triton kernels) and the
    package is ``available``. TRL >= 1.x refuses the fused cross-entropy next to its own LM head,
    so the layer kernels always leave it off.
    """
    if loss_impl == LOSS_LIGER:
        return {"use_liger_kernel": True}
    if requested != "liger":
        return {"use_liger_kernel": False}
    if not cuda or not available:
        log.warning("GOLORA_LAYER_KERNELS=liger ignored: %s", "no GPU" if not cuda else "liger-kernel not installed")
        return {"use_liger_kernel": False}
    return {"use_liger_kernel": True, "liger_kernel_config": dict(LIGER_LAYER_KERNELS)}


def sft_config(**kwargs):
    """SFTConfig from kwargs, dropping those this transformers/TRL does not know (5.17 vs 5.24)."""
    from trl import SFTConfig

    names = {f.name for f in dataclasses.fields(SFTConfig)}
    if "train_sampling_strategy" in names and kwargs.pop("group_by_length", False):
        kwargs["train_sampling_strategy"] = "group_by_length"
    if "activation_checkpointing" in names:  # transformers >= 5.2x renamed gradient_checkpointing*
        kwargs["activation_checkpointing"] = kwargs.pop("gradient_checkpointing", False)
        kwargs["activation_checkpointing_kwargs"] = kwargs.pop("gradient_checkpointing_kwargs", None)
    unknown = sorted(k for k in kwargs if k not in names)
    if unknown:
        log.info("SFTConfig here has no %s: left out", ", ".join(unknown))
    return SFTConfig(**{k: v for k, v in kwargs.items() if k in names})


def build_trainer(spec: LoraTrainingSpec, model, tokenizer, train_ds, *, output_dir: Path, world_size: int, plan,
                  micro: int, accumulation: int, ckpt: bool, cuda: bool, loss_impl: str, callbacks: list):
    """The SFTTrainer of one attempt and the padding efficiency of its micro-batches (None when
    unknown): LoRA on ``spec``'s modules, length-bucketed micro-batches (each optimizer step
    takes micro x accumulation sequences from each of ``world_size`` ranks), fp32 trainable
    parameters where the precision needs them."""
    from peft import LoraConfig

    t = spec.training
    efficiency = None
    lora = LoraConfig(
        r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
        target_modules=list(spec.lora.target_modules), bias="none", task_type="CAUSAL_LM",
    )
    # Benchmarks only: "group_by_length" trains in transformers' order instead of length buckets,
    # so bench/ can measure the difference in one run.
    now = settings.current()
    buckets = now.train_sampler != "group_by_length"
    lengths = [len(ids) for ids in train_ds["input_ids"]]
    # one optimizer step takes micro x accumulation sequences from each rank (accelerate hands
    # the sampler's micro-batches to the ranks in turn)
    per_step = micro * accumulation * world_size
    sampler = LengthBucketSampler(lengths, micro, seed=t.seed, per_step=per_step) if buckets else None
    if sampler is not None:
        real = padding_efficiency(lengths, sampler.batches(), PAD_MULTIPLE_CUDA if cuda else 1)
        efficiency = round(real, 4) if real else None
        log.info("length-bucketed micro-batches: %.1f%% of the padded tokens are real", 100 * (real or 0))
    else:
        log.info("sampler: transformers' group_by_length (GOLORA_TRAIN_SAMPLER=%s)", now.train_sampler)
    # Benchmarks only: GOLORA_PACKING=padding_free packs each micro-batch (the same samples) into one
    # row without pad tokens, attention kept inside each sample (packing.py).
    packed = packing_requested(now.packing)
    if packed:
        efficiency = 1.0  # every token of a packed row is a sample's
        use_varlen_attention(model)
    args = sft_config(
        output_dir=str(output_dir),
        per_device_train_batch_size=micro,
        per_device_eval_batch_size=micro,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        learning_rate=t.learning_rate,
        lr_scheduler_type="cosine",
        # warmupRatio is a fraction of the total steps. transformers v5 has no warmup_ratio: it
        # reads a float in [0, 1) given as warmup_steps as exactly that fraction (the CRD caps
        # warmupRatio at 0.5), so this is a ratio, not a step count.
        warmup_steps=float(t.warmup_ratio),
        weight_decay=0.0,
        max_grad_norm=MAX_GRAD_NORM,
        optim="adamw_torch_fused" if cuda else "adamw_torch",
        fp16=plan.fp16,
        bf16=plan.bf16,
        use_cpu=not cuda,
        gradient_checkpointing=ckpt,
        gradient_checkpointing_kwargs={"use_reentrant": False} if ckpt else None,
        group_by_length=not buckets,
        max_length=t.max_seq_length,
        packing=False,
        padding_free=False,
        completion_only_loss=True,
        pad_to_multiple_of=PAD_MULTIPLE_CUDA if cuda and not packed else None,
        **liger_arguments(loss_impl, cuda=cuda, requested=now.layer_kernels,
                          available=liger_installed()),
        logging_steps=t.logging_steps,
        logging_first_step=True,
        logging_nan_inf_filter=False,  # the divergence guard must see a NaN/inf loss, not an average hiding it
        save_strategy="steps",
        save_steps=t.checkpoint_steps,
        save_total_limit=CHECKPOINTS_KEPT,
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=t.seed,
        data_seed=t.seed,
        dataloader_num_workers=0,
        ddp_find_unused_parameters=False,  # every LoRA parameter takes part in every step
    )
    try:
        trainer = bucketed_sft_trainer()(model=model, args=args, train_dataset=train_ds,
                                         processing_class=tokenizer, peft_config=lora, callbacks=callbacks,
                                         data_collator=PackedCollator() if packed else None)
    except ValueError as exc:
        if "target" in str(exc).lower() and "module" in str(exc).lower():
            raise TrainerError(REASON_INVALID_CONFIG, f"lora.targetModules: {exc}") from exc
        raise
    if sampler is not None and len(trainer.train_dataset) != len(lengths):
        # TRL keeps every pre-tokenized row, in order; if a version stops doing so, train unbucketed
        log.warning("TRL prepared %d training rows from %d: micro-batches are not length-bucketed",
                    len(trainer.train_dataset), len(lengths))
        efficiency = None
        sampler = None
    trainer.length_buckets = sampler
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # ProgressCallback logs the same, once
    if plan.trainable_fp32:
        # SFTTrainer has just cast the LoRA parameters of a 4-bit model to bf16; fp16's GradScaler
        # cannot unscale bf16 gradients (the blog's crash on the T4), fp32 cannot mix them.
        before = trainable_dtypes(trainer.model)
        cast = force_trainable_fp32(trainer.model)
        log.info("trainable parameters forced to fp32 after SFTTrainer was built: %s -> %s (%d tensors)",
                 before, trainable_dtypes(trainer.model), cast)
    return trainer, efficiency


@functools.cache
def bucketed_sft_trainer():
    """SFTTrainer whose training order comes from ``length_buckets`` when it is set (one class,
    made on first use so that importing this module does not import TRL)."""
    from trl import SFTTrainer

    class BucketedSFTTrainer(SFTTrainer):
        length_buckets: LengthBucketSampler | None = None

        def _get_train_sampler(self, *args, **kwargs):
            if self.length_buckets is not None:
                return self.length_buckets
            return super()._get_train_sampler(*args, **kwargs)

    return BucketedSFTTrainer
