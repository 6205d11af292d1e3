"""A LoraTraining's status: ``progress`` and ``result`` (the trainer writes them), ``attempts``
and the rest (the operator's).

``kubectl get`` printer columns cannot format numbers, so the fields they show carry values
for people: ``progress.summary`` ("12/32 (37%)") and losses rounded to :data:`SHOWN_DECIMALS`
(:func:`progress_summary`, :func:`shown`). The precise numbers stay where something computes
with them: ``result.qualityGate`` (the gate's evalLoss, baseEvalLoss, evalLossRatio) and the
trainer's own memory.
"""

from __future__ import annotations

from pydantic import Field

from .common import CommonStatus, Failure, StatusModel

SHOWN_DECIMALS = 3  # a loss to three decimals says everything a person compares


def shown(value: float | None) -> float | None:
    """A number for a printer column: rounded to SHOWN_DECIMALS (None stays None)."""
    return None if value is None else round(float(value), SHOWN_DECIMALS)


def progress_percent(step: int, total: int | None) -> int | None:
    """Whole percent of the planned steps done (rounded down: 100 only at the last step)."""
    return min(100, 100 * step // total) if total else None


def progress_summary(step: int, total: int | None) -> str | None:
    """``progress.summary``, the PROGRESS column: "12/32 (37%)"; None before the plan is known."""
    return f"{step}/{total} ({progress_percent(step, total)}%)" if total else None


class TrainingProgress(StatusModel):
    """Written by the trainer at most every few seconds while it runs."""

    step: int | None = Field(None, description="Optimizer steps done.")
    total_steps: int | None = Field(None, description="Optimizer steps planned.")
    epoch: float | None = Field(None, description="Epochs done (fractional).")
    loss: float | None = Field(None, description="Latest training loss (3 decimals).")
    token_accuracy: float | None = Field(None, description="Latest mean token accuracy.")
    learning_rate: float | None = Field(None, description="Current learning rate.")
    tokens_per_second: float | None = Field(None, description="Training throughput.")
    eta_seconds: int | None = Field(None, description="Estimated seconds left.")
    percent: int | None = Field(None, description="step / totalSteps in whole percent, rounded down.")
    summary: str | None = Field(
        None, description="step/totalSteps (percent) for people, e.g. '12/32 (37%)': the PROGRESS column.")
    stage: str | None = Field(
        None, description="What the trainer is doing: loading, preparing, baseline, training, evaluating, gate, saving."
    )
    grad_norm: float | None = Field(None, description="Latest gradient norm (spikes precede divergence).")
    num_tokens: int | None = Field(None, description="Training tokens processed so far (padding excluded).")
    precision: str | None = Field(None, description="Precision in use (bf16, fp16, fp32).")
    micro_batch_size: int | None = Field(None, description="Micro-batch in use.")
    attempt: int | None = Field(None, description="Attempt the trainer runs as.")
    updated_at: str | None = Field(None, description="When the trainer wrote this (RFC 3339).")


class GenerationMetrics(StatusModel):
    """What one model (the base, or the adapter) generated for the gate's held-out prompts."""

    prompts: int | None = Field(None, description="Prompts generated for.")
    generated_tokens: int | None = Field(None, description="Tokens generated in all (EOS excluded).")
    whitespace_ratio: float | None = Field(None, description="Share of whitespace characters (empty output: 1).")
    whitespace_only_rate: float | None = Field(None, description="Fraction of generations that are only whitespace.")
    empty_rate: float | None = Field(None, description="Fraction of generations with no text at all.")
    longest_repeat_run: int | None = Field(None, description="Longest run of one repeated token.")
    distinct1: float | None = Field(None, description="Unique tokens / tokens, averaged over generations.")
    distinct2: float | None = Field(
        None, description="Unique bigrams / bigrams, averaged over generations of 2 tokens or more."
    )
    eos_rate: float | None = Field(None, description="Fraction of generations that stopped at end-of-turn.")
    go_parse_rate: float | None = Field(None, description="Fraction that parse as Go declarations.")
    go_parse_checked: int | None = Field(None, description="Generations given to the Go parse check.")
    type_check_rate: float | None = Field(
        None, description="Fraction of type-checkable generations that type-check in place of the original "
        "standard library function (go/types)."
    )
    type_checkable: int | None = Field(
        None, description="Generations whose pair is a standard library function the type check could use."
    )
    type_check_passed: int | None = Field(None, description="Of those, how many type-check.")


class GateSample(StatusModel):
    """One held-out prompt with what the base model and the adapter answered (shortened)."""

    prompt: str
    base: str | None = None
    adapter: str | None = None
    base_parses: bool | None = None
    adapter_parses: bool | None = None
    base_type_check: str | None = Field(None, description="ok, error or skipped (not a standard library pair).")
    adapter_type_check: str | None = Field(None, description="ok, error or skipped (not a standard library pair).")


class QualityGateResult(StatusModel):
    """Outcome of the quality gate: the adapter's generations next to the base model's."""

    passed: bool | None = None
    reason: str | None = Field(None, description="e.g. Passed, DegenerateOutput, WorseThanBase, LowParseRate.")
    message: str | None = None
    comparison: str | None = Field(
        None, description="The comparison the verdict rests on, adapter vs base, e.g. 'parse 0.62 vs 0.48'."
    )
    prompts: int | None = Field(None, description="Held-out prompts generated greedily by each model.")
    eval_loss: float | None = Field(None, description="Adapter loss on the eval tokens.")
    base_eval_loss: float | None = Field(None, description="Base model loss on the same tokens.")
    eval_loss_ratio: float | None = Field(None, description="evalLoss / baseEvalLoss.")
    adapter: GenerationMetrics | None = Field(None, description="The adapter's generations.")
    base: GenerationMetrics | None = Field(
        None, description="The base model's generations on the same prompts (same weights, adapter disabled)."
    )
    notes: list[str] = Field(default_factory=list, description="Checks skipped and why.")
    samples: list[GateSample] = Field(
        default_factory=list, description="The first prompts with the base's and the adapter's answers, side by side."
    )


class TrainingResult(StatusModel):
    """Written by the trainer when it ends (also result.json next to the adapter)."""

    train_loss: float | None = None
    eval_loss: float | None = Field(
        None, description="Adapter loss on the eval split, to 3 decimals (precise: qualityGate.evalLoss).")
    base_eval_loss: float | None = Field(
        None, description="Base model loss on the same tokens, to 3 decimals (precise: qualityGate.baseEvalLoss).")
    token_accuracy: float | None = None
    repetition: float | None = Field(None, description="Longest repeated-token run / generated tokens.")
    go_parse_rate: float | None = Field(None, description="The adapter's Go parse rate (qualityGate.adapter).")
    precision: str | None = Field(None, description="Precision actually used (bf16, fp16, fp32).")
    micro_batch_size: int | None = Field(None, description="Micro-batch actually used (per rank).")
    gradient_accumulation_steps: int | None = Field(None, description="Accumulation steps (per rank).")
    world_size: int | None = Field(None, description="Data-parallel ranks (processes) that trained.")
    samples_truncated: int | None = Field(None, description="Samples cut at maxSeqLength.")
    train_samples: int | None = None
    tokens_per_second: float | None = None
    padding_efficiency: float | None = Field(
        None, description="Real tokens / padded tokens over an epoch's micro-batches (1.0 = no padding)."
    )
    peak_memory_bytes: int | None = None
    adapter_path: str | None = Field(None, description="Adapter directory, relative to the store.")
    adapter_size_bytes: int | None = None
    quality_gate: QualityGateResult | None = None
    failure: Failure | None = Field(None, description="Set when training failed (e.g. OutOfMemory, Diverged).")
    attempt: int | None = Field(None, description="Attempt that wrote this result.")
    exit_code: int | None = Field(None, description="Process exit code (see golora.api.worker EXIT_*).")
    base_model: str | None = Field(None, description="base_model_name_or_path written into the adapter.")
    rank: int | None = Field(None, description="LoRA rank r of the saved adapter (adapter_config.json; "
                             "AdapterServing sizes --max-lora-rank from it).")
    quantization: str | None = Field(None, description="How the base was loaded: nf4 or none.")
    gradient_checkpointing: bool | None = None
    loss_implementation: str | None = Field(None, description="fused (chunked LM head), liger or plain.")
    global_step: int | None = Field(None, description="Optimizer steps done.")
    total_steps: int | None = Field(None, description="Optimizer steps planned.")
    resumed_from_step: int | None = Field(None, description="Checkpoint step this attempt resumed from.")
    first_loss: float | None = Field(None, description="First logged training loss (compare with baseEvalLoss).")
    eval_token_accuracy: float | None = None
    base_eval_token_accuracy: float | None = None
    eval_samples: int | None = None
    eval_tokens: int | None = Field(None, description="Completion tokens the eval losses are computed on.")
    tokens_truncated: int | None = Field(None, description="Tokens cut at maxSeqLength.")
    samples_dropped: int | None = Field(None, description="Samples skipped (empty, malformed, or prompt too long).")
    estimated_peak_memory_bytes: int | None = Field(None, description="Memory estimate behind the micro-batch.")
    train_runtime_seconds: float | None = None
    finished_at: str | None = Field(None, description="When the trainer finished (RFC 3339).")


class Attempt(StatusModel):
    """One training Job and how it ended."""

    attempt: int
    job_name: str
    micro_batch_size: int | None = None
    outcome: str | None = Field(None, description="Running, Succeeded, or the failure reason.")


class LoraTrainingStatus(CommonStatus):
    """Observed state of a LoraTraining."""

    expected_precision: str | None = Field(None, description="Precision the target node implies, before the Job starts.")
    attempt: int | None = Field(None, description="Current attempt number (1-based).")
    attempts: list[Attempt] = Field(default_factory=list, description="Jobs run so far.")
    job_name: str | None = Field(None, description="Training Job of the current attempt.")
    progress: TrainingProgress | None = None
    result: TrainingResult | None = None
