"""The worker protocol: what the operator and its worker Jobs (golora-extract, the trainer,
the adapter validator) agree on, apart from the CRDs.

A worker Job runs one JSON config from the environment variable :data:`CONFIG_ENV` (the
trainer: a :class:`TrainerConfig`, which embeds the LoraTraining spec; or ``--config FILE``),
patches its CR's status (``StatusTarget``) while it runs and when it
ends, writes its last words to :data:`TERMINATION_LOG` (the path in
:data:`TERMINATION_LOG_ENV`; the kubelet shows it in the Pod's status), and exits with one of
the codes below, each standing for a failure reason.
"""

from __future__ import annotations

from pydantic import Field

from .common import GROUP, VERSION, CamelModel
from .loratraining import LoraTrainingSpec

# The environment the operator gives worker pods (golora_trainer.settings has the trainer's own).
CONFIG_ENV = "GOLORA_CONFIG"
TRAINER_CONFIG_ENV = CONFIG_ENV
TERMINATION_LOG_ENV = "GOLORA_TERMINATION_LOG"
TERMINATION_LOG = "/dev/termination-log"  # the kubelet's default terminationMessagePath
POD_IP_ENV = "GOLORA_POD_IP"  # downward API status.podIP: what each torchrun agent advertises to its peers


# Failure reasons (status.result.failure.reason), each with its exit code.
REASON_TRAINING_FAILED = "TrainingFailed"  # anything unexpected; the message says what
REASON_INVALID_CONFIG = "InvalidConfig"  # config, data or base model unusable: retrying cannot help
REASON_PREQUANTIZED_BASE = "PrequantizedBase"  # AWQ/GPTQ/... base asked to be loaded in 4-bit
REASON_OUT_OF_MEMORY = "OutOfMemory"  # CUDA OOM: retry with half the micro-batch
REASON_DIVERGED = "Diverged"  # NaN/inf loss, or loss far above the base model's eval loss
REASON_QUALITY_GATE_FAILED = "QualityGateFailed"  # trained, but the gate refused the adapter
REASON_INVALID_ADAPTER = "InvalidAdapter"  # the saved adapter is not one vLLM can load
REASON_INTERRUPTED = "Interrupted"  # SIGTERM (pod deleted/preempted): checkpoint saved, a rerun resumes
REASON_JOB_DELETED = "JobDeleted"  # someone deleted the training Job: the next attempt resumes
# nodes > 1: a pod's peers did not all join torchrun's rendezvous in time (schedulingTimeoutSeconds)
REASON_RENDEZVOUS_TIMEOUT = "RendezvousTimeout"
REASON_UNSCHEDULABLE = "Unschedulable"  # ... because the scheduler could not place them all

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID_CONFIG = 2
EXIT_PREQUANTIZED_BASE = EXIT_INVALID_CONFIG
EXIT_OUT_OF_MEMORY = 3
EXIT_DIVERGED = 4
EXIT_QUALITY_GATE_FAILED = 5
EXIT_INVALID_ADAPTER = 6
EXIT_INTERRUPTED = 7  # also: a rank whose peer was lost (its collective failed), which reports nothing
EXIT_RENDEZVOUS_TIMEOUT = 8

REASON_EXIT_CODES: dict[str, int] = {
    REASON_TRAINING_FAILED: EXIT_FAILED,
    REASON_INVALID_CONFIG: EXIT_INVALID_CONFIG,
    REASON_PREQUANTIZED_BASE: EXIT_PREQUANTIZED_BASE,
    REASON_OUT_OF_MEMORY: EXIT_OUT_OF_MEMORY,
    REASON_DIVERGED: EXIT_DIVERGED,
    REASON_QUALITY_GATE_FAILED: EXIT_QUALITY_GATE_FAILED,
    REASON_INVALID_ADAPTER: EXIT_INVALID_ADAPTER,
    REASON_INTERRUPTED: EXIT_INTERRUPTED,
    REASON_RENDEZVOUS_TIMEOUT: EXIT_RENDEZVOUS_TIMEOUT,
}
# The reason an exit code stands for when no status patch arrived (e.g. read from a Job's pod):
# the inverse of the map above, the first reason of a shared code (InvalidConfig for 2) winning.
EXIT_CODE_REASONS: dict[int, str] = {}
for _reason, _code in REASON_EXIT_CODES.items():
    EXIT_CODE_REASONS.setdefault(_code, _reason)
del _reason, _code
# Only these are worth another attempt (OutOfMemory with half the micro-batch; Interrupted as is,
# resuming from the last checkpoint).
RETRYABLE_REASONS: frozenset[str] = frozenset({REASON_OUT_OF_MEMORY, REASON_INTERRUPTED, REASON_JOB_DELETED})

# Quality-gate reasons (status.result.qualityGate.reason).
GATE_PASSED = "Passed"
GATE_DISABLED = "Disabled"
GATE_DEGENERATE_OUTPUT = "DegenerateOutput"
GATE_WORSE_THAN_BASE = "WorseThanBase"
GATE_LOW_PARSE_RATE = "LowParseRate"


def exit_code_for(reason: str) -> int:
    """Exit code of a failure reason (unknown reasons are plain failures)."""
    return REASON_EXIT_CODES.get(reason, EXIT_FAILED)


def reason_for_exit_code(code: int) -> str | None:
    """Failure reason an exit code stands for; None for 0 or a code the trainer never uses."""
    return EXIT_CODE_REASONS.get(code)


class StatusTarget(CamelModel):
    """The custom resource whose status subresource the trainer patches."""

    group: str = Field(GROUP, description="API group.")
    version: str = Field(VERSION, description="API version.")
    plural: str = Field("loratrainings", description="Resource plural.")
    namespace: str = Field(..., min_length=1, max_length=253, description="Namespace of the CR.")
    name: str = Field(..., min_length=1, max_length=253, description="Name of the CR.")


class TrainerConfig(CamelModel):
    """The one JSON document the training Job hands the trainer (env GOLORA_CONFIG or --config)."""

    spec: LoraTrainingSpec = Field(..., description="The LoraTraining spec, validated by the CRD's own model.")
    store_root: str = Field(..., min_length=1, description="Where the store volume is mounted, e.g. /store.")
    train_path: str = Field(..., min_length=1, description="Training JSONL, relative to storeRoot.")
    eval_path: str | None = Field(
        None, description="Eval JSONL, relative to storeRoot; None: hold out a deterministic slice of train."
    )
    output_path: str = Field(..., min_length=1, description="Adapter directory, relative to storeRoot.")
    model_path: str | None = Field(
        None, description="Absolute local directory of the base model (baseModel.path); None: load baseModel.name."
    )
    attempt: int = Field(1, ge=1, description="Attempt number (1-based).")
    micro_batch_size: int | None = Field(
        None, ge=1, description="Operator override of the micro-batch (after an OutOfMemory: half the last)."
    )
    extractor_binary: str = Field(
        "golora-extract", min_length=1, description="golora-extract binary for the Go parse and type checks."
    )
    status_target: StatusTarget | None = Field(None, description="CR to report to; None: report nothing.")
    hf_token_file: str | None = Field(None, description="File holding a Hugging Face token (mounted Secret).")
