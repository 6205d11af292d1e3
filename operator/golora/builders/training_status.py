"""A LoraTraining's status from what one reconcile read: its GoDataset, its Job, the Pod's
end and what the trainer reported. Pure: every function returns the status merge-patch (None
when nothing changes) and the handler writes it; retries are ``training.next_attempt``.
"""

from __future__ import annotations

from typing import Any

from .. import conditions as cond
from ..api.loratraining import LoraTrainingSpec
from ..api.worker import (
    GATE_DISABLED,
    REASON_QUALITY_GATE_FAILED,
    REASON_RENDEZVOUS_TIMEOUT,
    REASON_TRAINING_FAILED,
    REASON_UNSCHEDULABLE,
)
from .status import Condition, JobState, Termination, status_patch, training_ready
from .training import CONTAINER_NAME, DatasetFiles, reason_from_termination

# Ready: the adapter is written and its quality gate passed (or is disabled).
READY = training_ready(GATE_DISABLED)


def _patch(status: dict[str, Any] | None, **kwargs: Any) -> dict[str, Any] | None:
    return status_patch(status, ready=READY, **kwargs)


def loss(x: Any) -> str:
    """A loss for people: 3 decimals, or n/a when the trainer did not report one."""
    return f"{x:.3f}" if isinstance(x, int | float) else "n/a"


def mark(attempts: list[dict[str, Any]], attempt: int, outcome: str) -> list[dict[str, Any]]:
    """``status.attempts`` with ``attempt``'s outcome set."""
    return [{**a, "outcome": outcome} if a.get("attempt") == attempt else a for a in attempts]


def describe(term: Termination) -> str:
    how = f"signal {term.signal}" if term.signal else f"exit code {term.exit_code}"
    text = f"container {CONTAINER_NAME} of pod {term.pod} ended with {how} ({term.reason or 'Error'})"
    return text + (f": {term.message}" if term.message else "")


def dataset_ready(files: DatasetFiles) -> Condition:
    return (cond.DATASET_READY, cond.TRUE, "DatasetReady",
            f"training on {files.train_path}" + (f" (eval {files.eval_path})" if files.eval_path else ""))


def waiting_for_dataset(status: dict[str, Any], generation: int, dataset_name: str, dataset: dict[str, Any] | None,
                        expected_precision: str) -> dict[str, Any] | None:
    """The GoDataset is missing or not Succeeded: Pending (Failed when it failed), with the
    precision ``auto`` will use on the nodes already shown."""
    ds_status = (dataset or {}).get("status") or {}
    why = (f"GoDataset {dataset_name} not found" if dataset is None else
           f"GoDataset {dataset_name} is {ds_status.get('phase') or 'not ready'}"
           + (f": {ds_status['message']}" if ds_status.get("message") else ""))
    reason = "DatasetNotFound" if dataset is None else "DatasetNotReady"
    phase = cond.FAILED if ds_status.get("phase") == cond.FAILED else cond.PENDING
    return _patch(status, phase=phase, message=f"waiting: {why}", generation=generation,
                  conditions=[(cond.DATASET_READY, cond.FALSE, reason, why)],
                  extra={"expectedPrecision": expected_precision})


def pod_scheduling(status: dict[str, Any], generation: int, pod: str, scheduled: dict[str, Any]) -> dict[str, Any] | None:
    """The training pod's PodScheduled condition (e.g. unschedulable: the T4 is busy serving)."""
    if scheduled.get("status") == "True":
        return _patch(status, phase=status.get("phase", cond.PENDING), message=status.get("message", ""),
                      generation=generation, conditions=[(cond.SCHEDULED, cond.TRUE, "Scheduled",
                                                          f"pod {pod} scheduled")])
    msg = scheduled.get("message") or "the training pod cannot be scheduled"
    return _patch(status, phase=cond.PENDING, message=f"unschedulable: {msg}", generation=generation,
                  conditions=[(cond.SCHEDULED, cond.FALSE, cond.as_reason(scheduled.get("reason"), "Unschedulable"),
                               msg)])


def ranks_scheduling(status: dict[str, Any], generation: int, placed: bool, message: str) -> dict[str, Any] | None:
    """Several nodes: Scheduled only when every rank's pod is placed (all or nothing)."""
    return _patch(status, phase=status.get("phase", cond.PENDING),
                  message=status.get("message", "") if placed else f"unschedulable: {message}", generation=generation,
                  conditions=[(cond.SCHEDULED, cond.TRUE if placed else cond.FALSE,
                               "Scheduled" if placed else "Unschedulable", message)])


def started(status: dict[str, Any], generation: int, *, job_name: str, attempt: int, micro_batch: int | None,
            attempts: list[dict[str, Any]], ready: Condition, note: str, expected_precision: str
            ) -> dict[str, Any] | None:
    """An attempt's Job is about to be created: Pending, recorded in ``status.attempts``."""
    record: dict[str, Any] = {"attempt": attempt, "jobName": job_name, "outcome": "Pending"}
    if micro_batch:
        record["microBatchSize"] = micro_batch
    attempts = [a for a in attempts if a.get("attempt") != attempt] + [record]
    msg = note or f"waiting for training Job {job_name} to start"
    extra = {"attempt": attempt, "attempts": attempts, "jobName": job_name, "expectedPrecision": expected_precision}
    update = _patch(status, phase=cond.PENDING, message=msg, generation=generation, extra=extra, conditions=[
        ready, (cond.SCHEDULED, cond.UNKNOWN, "JobCreated", f"Job {job_name} created"),
        (cond.TRAINING, cond.FALSE, "Waiting", msg)])
    if attempt == 1 and status.get("jobName") != job_name:
        update = {**(update or {}), "progress": None, "result": None}  # a new generation starts clean
    return update


def running(status: dict[str, Any], generation: int, job: JobState, attempt: int, attempts: list[dict[str, Any]],
            ready: Condition, *, nodes: int = 1) -> dict[str, Any] | None:
    """The Job is pending or running: its progress in the message. Several nodes: one running
    pod does not mean all are placed (``ranks_scheduling`` says)."""
    progress = status.get("progress") or {}
    msg = "training" + (f": step {progress['step']}/{progress['totalSteps']}" if progress.get("totalSteps") else "")
    phase = cond.RUNNING if job.phase == cond.RUNNING else cond.PENDING
    conds = [ready]
    if job.phase == cond.RUNNING:
        if nodes == 1:
            conds.append((cond.SCHEDULED, cond.TRUE, "Scheduled", "training pod is running"))
        conds.append((cond.TRAINING, cond.TRUE, "Training", f"attempt {attempt} running"))
    return _patch(status, phase=phase, message=msg if phase == cond.RUNNING else status.get("message", ""),
                  generation=generation, conditions=conds, extra={"attempts": mark(attempts, attempt, "Running")})


def succeeded(status: dict[str, Any], generation: int, result: dict[str, Any], attempt: int,
              attempts: list[dict[str, Any]], ready: Condition) -> dict[str, Any] | None:
    """The adapter is written: Succeeded, with the losses and the gate's verdict."""
    gate = result.get("qualityGate") or {}
    gate_reason = cond.as_reason(gate.get("reason"), GATE_DISABLED)
    gate_cond = (cond.QUALITY_GATE_PASSED, cond.TRUE if gate.get("passed") else cond.UNKNOWN, gate_reason,
                 gate.get("message") or ("quality gate disabled" if gate_reason == GATE_DISABLED else ""))
    msg = (f"adapter {result.get('adapterPath')}: eval loss {loss(result.get('evalLoss'))} "
           f"(base {loss(result.get('baseEvalLoss'))}), gate {gate_reason}")
    return _patch(status, phase=cond.SUCCEEDED, message=msg, generation=generation, conditions=[
        ready, (cond.TRAINING, cond.FALSE, "Completed", f"attempt {attempt} completed"),
        (cond.SUCCEEDED_CONDITION, cond.TRUE, "AdapterReady", msg), gate_cond],
        extra={"attempts": mark(attempts, attempt, "Succeeded")})


def failure(result: dict[str, Any], term: Termination | None, job: JobState) -> tuple[str, str]:
    """Why an attempt failed (reason, message): the trainer's report, else how its container
    ended (the Pod's status: exit code, OOMKilled, signal), else the Job's."""
    reported = result.get("failure") or {}
    reason = cond.as_reason(reported.get("reason") or reason_from_termination(term) or job.reason,
                            REASON_TRAINING_FAILED)
    return reason, reported.get("message") or (describe(term) if term else job.message)


def unschedulable_ranks(spec: LoraTrainingSpec, status: dict[str, Any], reason: str, message: str) -> tuple[str, str]:
    """Several nodes: the peers never joined because the scheduler could not place them all
    (Scheduled=False): say so, in its words, instead of RendezvousTimeout."""
    sched = cond.get_condition(status.get("conditions"), cond.SCHEDULED) or {}
    if reason == REASON_RENDEZVOUS_TIMEOUT and sched.get("status") == cond.FALSE:
        return REASON_UNSCHEDULABLE, (f"not all {spec.placement.nodes} training pods could be scheduled within "
                                      f"{spec.placement.scheduling_timeout_seconds}s, so none trained and the placed "
                                      f"ones were released: {sched.get('message')}")
    return reason, message


def used_micro_batch(spec: LoraTrainingSpec, status: dict[str, Any], result: dict[str, Any],
                     override: int | None) -> int | None:
    """The micro-batch an attempt ran with: as reported, else as asked (killed before it reported)."""
    asked = spec.training.micro_batch_size if isinstance(spec.training.micro_batch_size, int) else None
    return result.get("microBatchSize") or (status.get("progress") or {}).get("microBatchSize") or override or asked


def failed(status: dict[str, Any], generation: int, reason: str, message: str, gate: dict[str, Any],
           attempts: list[dict[str, Any]], ready: Condition) -> dict[str, Any] | None:
    """No attempt left: Failed with the reason (and the gate's, when the gate refused it)."""
    conds = [ready, (cond.TRAINING, cond.FALSE, reason, message), (cond.SUCCEEDED_CONDITION, cond.FALSE, reason, message)]
    if reason == REASON_QUALITY_GATE_FAILED or gate.get("passed") is False:
        conds.append((cond.QUALITY_GATE_PASSED, cond.FALSE, cond.as_reason(gate.get("reason"), reason),
                      gate.get("message") or message))
    return _patch(status, phase=cond.FAILED, message=f"{reason}: {message}"[:1000], generation=generation,
                  conditions=conds, extra={"attempts": attempts})


def retry_note(attempt: int, reason: str, micro_batch: int | None) -> str:
    return f"attempt {attempt} failed ({reason}); retrying" + (f" with micro-batch {micro_batch}" if micro_batch else "")
