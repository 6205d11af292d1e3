"""The one exception type a failed run ends with, and how an exception maps to a reason."""

from __future__ import annotations

from golora.api.worker import REASON_OUT_OF_MEMORY, REASON_TRAINING_FAILED, exit_code_for


class TrainerError(Exception):
    """A failure with a reason the operator understands (see golora.api.worker REASON_*)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message

    @property
    def exit_code(self) -> int:
        return exit_code_for(self.reason)


def is_out_of_memory(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error, however it was raised (torch, bitsandbytes, cuBLAS)."""
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except Exception:  # pragma: no cover - torch always present in the trainer image
        pass
    text = str(exc)
    return isinstance(exc, RuntimeError | MemoryError) and (
        "out of memory" in text.lower() or "CUBLAS_STATUS_ALLOC_FAILED" in text
    )


def classify(exc: BaseException) -> TrainerError:
    """Turn any exception into a TrainerError (OutOfMemory, or TrainingFailed with the message)."""
    if isinstance(exc, TrainerError):
        return exc
    if is_out_of_memory(exc):
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return TrainerError(REASON_OUT_OF_MEMORY, first[:500])
    return TrainerError(REASON_TRAINING_FAILED, f"{type(exc).__name__}: {exc}"[:2000])
