"""TrainerCallbacks: live progress, the divergence guard, graceful stop, final checkpoint, faults."""

from __future__ import annotations

import logging
import math
import signal
import time

from transformers import TrainerCallback

from golora.api.loratraining_status import shown

from . import settings
from .report import progress_fields

log = logging.getLogger(__name__)

# Divergence: stop when the logged loss is NaN/inf, or (after warm-up) this many times the base
# model's eval loss. A sane LoRA run starts at the base loss (B is zero-initialised) and goes down.
DIVERGENCE_FACTOR = 3.0
# The first logged loss this far above the base eval loss points at a data/label bug, not training.
FIRST_LOSS_WARN_FACTOR = 1.5


class ProgressCallback(TrainerCallback):
    """Collects the training curve and reports progress (the reporter throttles)."""

    def __init__(self, reporter, static: dict):
        self.reporter = reporter
        self.static = static
        self.first_log: tuple[float, int] | None = None  # (time, tokens) at the first log
        self.last_log: tuple[float, int] | None = None
        self.start_time = time.monotonic()
        self.start_step = 0
        self.last: dict = {}
        self.losses: list[tuple[int, float]] = []
        self.first_loss: float | None = None

    def on_train_begin(self, args, state, control, **kw):
        self.start_time = time.monotonic()
        self.start_step = state.global_step
        self.report(state, force=True)

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        if "loss" in logs:
            loss = float(logs["loss"])
            self.losses.append((state.global_step, loss))
            if self.first_loss is None:
                self.first_loss = loss
            self.last["loss"] = loss
        for src, dst in (("mean_token_accuracy", "tokenAccuracy"), ("learning_rate", "learningRate"),
                         ("grad_norm", "gradNorm")):
            if src in logs and logs[src] is not None:
                self.last[dst] = float(logs[src])
        if "num_tokens" in logs:
            tokens = int(logs["num_tokens"])
            self.last["numTokens"] = tokens
            now = time.monotonic()
            if self.first_log is None:
                self.first_log = (now, tokens)
            self.last_log = (now, tokens)
        if "loss" in logs:
            log.info("step %d/%d loss %.4f acc %s lr %s", state.global_step, state.max_steps, self.last["loss"],
                     _fmt(self.last.get("tokenAccuracy")), _fmt(self.last.get("learningRate")))
        self.report(state)

    def on_train_end(self, args, state, control, **kw):
        self.report(state, force=True)

    def tokens_per_second(self) -> float | None:
        """Throughput between the first and the last log (excludes the first step's warm-up)."""
        if self.first_log and self.last_log and self.last_log[0] > self.first_log[0]:
            return (self.last_log[1] - self.first_log[1]) / (self.last_log[0] - self.first_log[0])
        if self.last_log:
            return self.last_log[1] / max(1e-9, self.last_log[0] - self.start_time)
        return None

    def progress(self, state) -> dict:
        total = state.max_steps or 0
        step = state.global_step
        done = step - self.start_step
        elapsed = time.monotonic() - self.start_time
        eta = int((total - step) * elapsed / done) if done > 0 and total else None
        tps = self.tokens_per_second()
        return progress_fields(
            **self.static,
            stage="training",
            step=step,
            total_steps=total or None,
            epoch=round(float(state.epoch or 0.0), 4),
            loss=shown(self.last.get("loss")),
            token_accuracy=_round(self.last.get("tokenAccuracy")),
            learning_rate=self.last.get("learningRate"),
            grad_norm=self.last.get("gradNorm"),
            num_tokens=self.last.get("numTokens"),
            tokens_per_second=round(tps, 1) if tps else None,
            eta_seconds=eta,
        )

    def report(self, state, force: bool = False) -> None:
        self.reporter.progress({k: v for k, v in self.progress(state).items() if v is not None}, force=force)


def _round(v: float | None, digits: int = 4) -> float | None:
    """Status is read by people: four decimals say everything an accuracy needs to."""
    return None if v is None else round(v, digits)


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4g}"


class DivergenceGuard(TrainerCallback):
    """Stops training on NaN/inf loss, or on loss far above the base eval loss after warm-up."""

    def __init__(self, base_eval_loss: float | None, *, warmup_ratio: float = 0.0, min_warmup: int = 1,
                 factor: float = DIVERGENCE_FACTOR):
        self.base = base_eval_loss
        self.warmup_ratio = warmup_ratio
        self.min_warmup = min_warmup
        self.warmup_steps = min_warmup
        self.factor = factor
        self.reason: str | None = None
        self.warned = False

    def on_train_begin(self, args, state, control, **kw):
        self.warmup_steps = max(self.min_warmup, math.ceil(self.warmup_ratio * (state.max_steps or 0)))

    def on_log(self, args, state, control, logs=None, **kw):
        if not logs or "loss" not in logs or self.reason:
            return
        loss = float(logs["loss"])
        if not math.isfinite(loss):
            self.reason = f"training loss became {loss} at step {state.global_step}"
        elif self.base and state.global_step > self.warmup_steps and loss > self.factor * self.base:
            self.reason = (
                f"training loss {loss:.4f} at step {state.global_step} is more than {self.factor:g}x the base "
                f"model's eval loss {self.base:.4f}"
            )
        elif self.base and not self.warned and loss > FIRST_LOSS_WARN_FACTOR * self.base:
            self.warned = True
            log.warning("first logged loss %.4f is far above the base eval loss %.4f: check the data and labels",
                        loss, self.base)
        if self.reason:
            log.error("diverged: %s", self.reason)
            control.should_training_stop = True
            control.should_save = False


class StopOnSignal(TrainerCallback):
    """SIGTERM (pod deleted or preempted): save a checkpoint at the next step end and stop."""

    def __init__(self):
        self.signalled: int | None = None
        self.stopped_at: int | None = None
        self._previous = None

    def install(self) -> None:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (tests)
            self._previous = None

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handle(self, signum, frame):
        log.warning("received signal %d: saving a checkpoint and stopping", signum)
        self.signalled = signum

    def on_step_end(self, args, state, control, **kw):
        from . import distributed

        # every rank stops at the same step, or the others wait in a collective forever
        if distributed.any_rank(self.signalled is not None) and self.stopped_at is None:
            if self.signalled is None:
                self.signalled = signal.SIGTERM  # a peer rank's pod is being stopped
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True


class FinalCheckpoint(TrainerCallback):
    """Checkpoint the last step too, so a run killed after training (during the gate) resumes
    with nothing left to train."""

    def on_step_end(self, args, state, control, **kw):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_save = True


class FaultInjection(TrainerCallback):
    """For the operator's tests: ``GOLORA_FAULT_OOM_ABOVE_MICRO_BATCH=N`` makes any attempt with a
    micro-batch above N fail with a CUDA out-of-memory error at its first step."""

    def __init__(self, micro_batch: int):
        self.micro_batch = micro_batch
        self.limit = settings.current().fault_oom_above_micro_batch

    def on_step_begin(self, args, state, control, **kw):
        if self.limit is not None and self.micro_batch > self.limit:
            import torch

            raise torch.OutOfMemoryError(
                f"CUDA out of memory (injected: micro-batch {self.micro_batch} > {self.limit})"
            )


class TrainableDtypeGuard(TrainerCallback):
    """In fp16 mode every trainable parameter must be fp32 when training starts (GradScaler)."""

    def __init__(self, require_fp32: bool):
        self.require_fp32 = require_fp32
        self.dtypes: dict[str, int] = {}

    def on_train_begin(self, args, state, control, model=None, **kw):
        if model is None:
            return
        from .precision import trainable_dtypes

        self.dtypes = trainable_dtypes(model)
        if self.require_fp32 and set(self.dtypes) - {"torch.float32"}:
            raise RuntimeError(f"trainable parameters must be fp32 for this precision, found {self.dtypes}")
