"""LoraTraining: a GoDataset (or a JSONL path) -> a QLoRA adapter on the store.

The same models validate the CR (through the generated CRD) and the trainer's JSON config
(``golora.api.worker.TrainerConfig`` embeds this spec). The status the trainer and the
operator write is ``golora.api.loratraining_status``.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .common import (
    K8S_NAME_PATTERN,
    CamelModel,
    KindInfo,
    PrinterColumn,
    Resources,
    SecretKeyRef,
    StoreRef,
    Toleration,
    cel,
    relative_path,
    section,
    validations,
)
from .loratraining_status import LoraTrainingStatus

# The attention projections: the blog's (and QLoRA guides') standard starting point.
DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj")

# Names that say the checkpoint is already quantized: bitsandbytes cannot quantize it again
# (the blog's "You cannot load an AWQ model and quantize it with BitsAndBytes").
PREQUANTIZED_NAME_REGEX = "(?i)(awq|gptq|int4|int8|bnb|gguf|exl2)"
PREQUANTIZED_MESSAGE = (
    "baseModel.name is already quantized (AWQ/GPTQ/...): it cannot be re-quantized to 4-bit. "
    "Train on the full-precision base (e.g. Qwen/Qwen2.5-7B-Instruct) and serve the adapter "
    "on the quantized model"
)


class BaseModelRef(CamelModel):
    """The base model: a Hugging Face id, or a directory on the store volume."""

    one_of = ((("name", "path"), "set exactly one of baseModel.name or baseModel.path"),)

    name: str | None = Field(
        None,
        max_length=256,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9._-]+)?$",
        description="Hugging Face model id, e.g. Qwen/Qwen2.5-7B-Instruct (the full-precision base; "
        "serve the adapter on the AWQ variant).",
    )
    path: str | None = relative_path("path", "Model directory relative to the store (config.json, tokenizer, weights).")
    revision: str | None = Field(None, max_length=256, description="Hub revision (branch, tag or commit).")
    token_secret: SecretKeyRef | None = Field(
        None, description="Secret with a Hugging Face token, mounted as a file."
    )


class DatasetRef(CamelModel):
    """A GoDataset in the same namespace; training waits until it has Succeeded."""

    name: str = Field(..., max_length=253, pattern=K8S_NAME_PATTERN, description="GoDataset name.")


DEFAULT_LORA_RANK = 16


class LoraSpec(CamelModel):
    """LoRA adapter shape. vLLM serves ranks up to 512 (rounded up to its allowed set)."""

    r: int = Field(DEFAULT_LORA_RANK, ge=1, le=512, description="LoRA rank (1-512).")
    alpha: int = Field(32, ge=1, le=4096, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="LoRA dropout.")
    target_modules: list[Annotated[str, Field(min_length=1, max_length=128)]] = Field(
        default_factory=lambda: list(DEFAULT_TARGET_MODULES),
        min_length=1,
        max_length=32,
        description="Module names to adapt (attention projections by default). embed_tokens and "
        "lm_head are refused: vLLM cannot serve them.",
        json_schema_extra={
            "default": list(DEFAULT_TARGET_MODULES),
            **validations(
                cel("self.all(m, m.matches('^[A-Za-z0-9_.]+$') && !(m in ['embed_tokens', 'lm_head']))",
                    "targetModules must be module names; embed_tokens and lm_head cannot be served by vLLM")
            ),
        },
    )


class Quantization(CamelModel):
    """How the frozen base is loaded for training."""

    type: Literal["nf4", "none"] = Field(
        "nf4", description="nf4: QLoRA 4-bit (bitsandbytes, GPU only); none: base in training precision."
    )
    double_quant: bool = Field(True, description="Quantize the quantization constants too (saves ~0.4 GB on 7B).")


class Training(CamelModel):
    """Optimisation settings. Defaults are a sane start for ~40k Go pairs on a 7B instruct model."""

    epochs: float = Field(1.0, gt=0, le=100, description="Passes over the training split.")
    max_samples: int = Field(0, ge=0, description="Use at most this many training pairs (0 = all).")
    max_steps: int = Field(0, ge=0, description="Stop after this many optimizer steps (0 = from epochs).")
    learning_rate: float = Field(2e-4, gt=0, le=1.0, description="Peak learning rate.")
    warmup_ratio: float = Field(0.03, ge=0, le=0.5, description="Linear warm-up fraction.")
    micro_batch_size: int | Literal["auto"] = Field(
        "auto",
        description="Sequences per forward pass, or 'auto' to pick the largest that fits the GPU's "
        "memory; gradient accumulation keeps the effective batch.",
        json_schema_extra=validations(
            cel("type(self) == string ? self == 'auto' : (self >= 1 && self <= 1024)",
                "microBatchSize must be 'auto' or an integer between 1 and 1024")
        ),
    )
    effective_batch_size: int = Field(16, ge=1, le=65536, description="Sequences per optimizer step.")
    max_seq_length: int = Field(1024, ge=32, le=131072, description="Tokens per sample; longer ones are truncated (counted).")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto",
        description="auto: bf16 on compute capability >= 8.0, the fp16 recipe on 7.x (T4), fp32 on CPU.",
    )
    seed: int = Field(42, ge=0, description="Random seed.")
    @model_validator(mode="after")
    def _micro_batch_fits_effective_batch(self) -> Training:
        # A cross-field rule the operator checks (Accepted=False with this message),
        # so a spec admitted by an older CRD still gets a readable answer.
        if isinstance(self.micro_batch_size, int) and self.micro_batch_size > self.effective_batch_size:
            raise ValueError(
                f"microBatchSize {self.micro_batch_size} is larger than effectiveBatchSize "
                f"{self.effective_batch_size}; lower microBatchSize or raise effectiveBatchSize"
            )
        return self

    checkpoint_steps: int = Field(100, ge=1, description="Save a resumable checkpoint every N steps.")
    logging_steps: int = Field(10, ge=1, description="Log (and report progress) every N steps.")


class Placement(CamelModel):
    """Where the training Job runs: GPU nodes, by product label or node selector.

    ``gpus`` > 1 runs the trainer under torchrun, one data-parallel rank per GPU; ``nodes`` > 1
    makes the Job an Indexed Job, one pod per node, with torchrun's rendezvous on pod 0."""

    gpu_product: str | None = Field(
        None,
        max_length=128,
        description="GPU product as labelled by GPU feature discovery (nvidia.com/gpu.product), e.g. Tesla-T4.",
    )
    gpus: int = Field(
        1, ge=0, le=16,
        description="nvidia.com/gpu limit per node (0 = CPU only). Above 1: one data-parallel rank per GPU "
        "(torchrun --nproc-per-node); the effective batch is kept by dividing the accumulation steps.",
    )
    nodes: int = Field(
        1, ge=1, le=64,
        description="Nodes to train on, one pod each (an Indexed Job plus a headless Service for torchrun's "
        "rendezvous). Every pod must be scheduled or none trains; the store must be ReadWriteMany.",
    )
    scheduling_timeout_seconds: int = Field(
        600, ge=10, le=86400,
        description="With nodes > 1: how long the pods that were placed wait for the others to start; then "
        "the attempt fails (Unschedulable, with the scheduler's message) and frees what it holds.",
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Extra node selector labels.")
    tolerations: list[Toleration] = Field(default_factory=list, description="Tolerations (e.g. for a GPU taint).")
    resources: Resources | None = Field(None, description="CPU/memory requests and limits.")


class QualityGate(CamelModel):
    """Checks after training that keep a collapsed or worse-than-base adapter from being served.

    The base model (the same weights, adapter disabled) and the adapter generate greedily for the
    same held-out prompts; by default the adapter is judged against the base, so the rules mean
    the same on a tiny model and on a 7B one. Collapse guards (mostly whitespace, almost no
    distinct bigrams) fail an adapter whatever the base does; the absolute thresholds below are
    off unless set."""

    enabled: bool = Field(True, description="Run the gate; Succeeded requires it to pass.")
    prompts: int = Field(8, ge=1, le=256, description="Held-out prompts generated greedily.")
    max_new_tokens: int = Field(128, ge=8, le=4096, description="Tokens generated per prompt.")
    compare_with_base: bool = Field(
        True, description="Generate with the base model too (adapter disabled) and judge the adapter against it; "
        "false: collapse guards, absolute thresholds and eval loss only."
    )
    whitespace_tolerance: float = Field(
        0.1, ge=0, le=1,
        description="Fail (DegenerateOutput) if the adapter's whitespace ratio exceeds the base's by more than this.",
    )
    repeat_run_factor: float = Field(
        2.0, ge=1,
        description="Fail (DegenerateOutput) if the adapter's longest run of one token is longer than this many "
        "times the base's (and than 16 tokens).",
    )
    min_distinct2_ratio: float = Field(
        0.5, ge=0, le=1,
        description="Fail (DegenerateOutput) if the adapter's distinct-2 is under this fraction of the base's "
        "(structured code repeats some bigrams; a looping adapter repeats most).",
    )
    parse_rate_tolerance: float = Field(
        0.1, ge=0, le=1,
        description="Fail (LowParseRate) if the adapter's Go parse rate is below the base's by more than this.",
    )
    max_eval_loss_ratio: float = Field(
        1.0, gt=0, description="Fail (WorseThanBase) unless adapter eval loss <= base eval loss x this."
    )
    max_whitespace_ratio: float | None = Field(
        None, ge=0, le=1,
        description="Absolute: fail (DegenerateOutput) if more of the adapter's output than this is whitespace.",
    )
    max_repeat_run: int | None = Field(
        None, ge=2, description="Absolute: fail (DegenerateOutput) if one token repeats this many times in a row."
    )
    min_distinct2: float | None = Field(
        None, ge=0, le=1, description="Absolute: fail (DegenerateOutput) if the adapter's distinct-2 is below this."
    )
    min_go_parse_rate: float | None = Field(
        None, ge=0, le=1,
        description="Absolute: fail (LowParseRate) if fewer of the adapter's generations parse as Go.",
    )


class RetryPolicy(CamelModel):
    """Bounded retries: an out-of-memory attempt is retried with half the micro-batch."""

    max_attempts: int = Field(3, ge=1, le=10, description="Attempts in total, including the first.")


class LoraTrainingSpec(CamelModel):
    """Desired training run."""

    one_of = ((("dataset_ref", "data_path"), "set exactly one of datasetRef or dataPath"),)
    cel_rules = (
        cel(
            f"!has(self.baseModel.name) || self.quantization.type == 'none' || "
            f"!self.baseModel.name.matches('{PREQUANTIZED_NAME_REGEX}')",
            PREQUANTIZED_MESSAGE,
            fieldPath=".baseModel.name",
            reason="FieldValueInvalid",
        ),
    )

    @model_validator(mode="after")
    def _not_prequantized(self) -> LoraTrainingSpec:
        name = self.base_model.name
        if name and self.quantization.type != "none" and re.search(PREQUANTIZED_NAME_REGEX, name):
            raise ValueError(PREQUANTIZED_MESSAGE)
        return self

    base_model: BaseModelRef = Field(..., description="Model to adapt.")
    dataset_ref: DatasetRef | None = Field(None, description="GoDataset to train on (must be Succeeded).")
    data_path: str | None = relative_path("dataPath", "Or a JSONL file (instruction/output per line) relative to the store.")
    lora: LoraSpec = section(LoraSpec, "Adapter shape.")
    quantization: Quantization = section(Quantization, "Base model loading.")
    training: Training = section(Training, "Optimisation settings.")
    placement: Placement = section(Placement, "Node and GPU placement.")
    storage: StoreRef = section(StoreRef, "Store volume (dataset in, adapter out).")
    quality_gate: QualityGate = section(QualityGate, "Post-training checks.")
    retry: RetryPolicy = section(RetryPolicy, "Retry policy.")


KIND = KindInfo(
    kind="LoraTraining",
    plural="loratrainings",
    singular="loratraining",
    short_names=["lt"],
    spec=LoraTrainingSpec,
    status=LoraTrainingStatus,
    description="LoraTraining fine-tunes a base model with (Q)LoRA on a GoDataset and writes a "
    "vLLM-servable adapter to the store, guarded by a quality gate.",
    printer_columns=[
        PrinterColumn(name="Phase", type="string", json_path=".status.phase"),
        PrinterColumn(name="Progress", type="string", json_path=".status.progress.summary",
                      description="Steps done of those planned, and the percent"),
        PrinterColumn(name="Loss", type="number", json_path=".status.progress.loss"),
        PrinterColumn(name="Eval-Loss", type="number", json_path=".status.result.evalLoss"),
        PrinterColumn(name="Base-Loss", type="number", json_path=".status.result.baseEvalLoss", priority=1),
        PrinterColumn(name="Gate", type="string", json_path=".status.result.qualityGate.reason"),
        PrinterColumn(name="Vs-Base", type="string", json_path=".status.result.qualityGate.comparison",
                      description="The gate's key comparison, adapter vs base"),
        PrinterColumn(name="Typecheck", type="number", json_path=".status.result.qualityGate.adapter.typeCheckRate",
                      description="Adapter generations that type-check (standard library pairs)", priority=1),
        PrinterColumn(name="Base-Typecheck", type="number",
                      json_path=".status.result.qualityGate.base.typeCheckRate",
                      description="Base model generations that type-check (standard library pairs)", priority=1),
        PrinterColumn(name="Precision", type="string", json_path=".status.expectedPrecision", priority=1),
        PrinterColumn(name="Attempt", type="integer", json_path=".status.attempt", priority=1),
        PrinterColumn(name="Message", type="string", json_path=".status.message", priority=1),
        PrinterColumn(name="Age", type="date", json_path=".metadata.creationTimestamp"),
    ],
)
