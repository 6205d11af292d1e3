"""Pure status computations: what a Job's status means for its CR, and the status patch
that says so (phase, message, conditions)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import conditions as c


@dataclass(frozen=True)
class JobState:
    phase: str  # Pending, Running, Succeeded, Failed
    reason: str
    message: str


def job_state(job: dict[str, Any]) -> JobState:
    """Read a Job's status like `kubectl describe job` would."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return JobState(c.SUCCEEDED, "JobComplete", cond.get("message") or "Job completed")
        if cond.get("type") == "Failed":
            return JobState(c.FAILED, cond.get("reason") or "JobFailed", cond.get("message") or "Job failed")
    # ``active`` counts pods that exist (a pending, unschedulable one too); ``ready`` counts
    # pods whose containers run.
    if status.get("ready"):
        return JobState(c.RUNNING, "JobRunning", "Job is running")
    if status.get("active"):
        return JobState(c.PENDING, "PodPending", "the Job's pod is waiting to run")
    return JobState(c.PENDING, "JobPending", "Job is waiting to start")


def status_patch(
    current: dict[str, Any] | None,
    *,
    phase: str,
    message: str,
    generation: int | None,
    conditions: list[tuple[str, str, str, str]],
    extra: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """The status merge-patch for a new phase/conditions, or None if nothing would change
    (so an idempotent reconcile makes no write)."""
    current = current or {}
    conds = current.get("conditions")
    for type_, status, reason, msg in conditions:
        conds = c.set_condition(conds, type_, status, reason, msg, generation)
    patch: dict[str, Any] = {}
    if current.get("phase") != phase:
        patch["phase"] = phase
    if current.get("message") != message:
        patch["message"] = message
    if conds != (current.get("conditions") or []):
        patch["conditions"] = conds
    for key, value in (extra or {}).items():
        if current.get(key) != value:
            patch[key] = value
    return patch or None



# Labels the real Job controller puts on its Pods (the second is the legacy one).
JOB_NAME_LABELS = ("batch.kubernetes.io/job-name", "job-name")


@dataclass(frozen=True)
class Termination:
    """How a Job's container ended, as the kubelet reported it on the Pod."""

    pod: str
    exit_code: int
    reason: str  # Completed, Error, OOMKilled, ContainerCannotRun, ...
    signal: int | None
    message: str


def last_termination(pods: list[dict[str, Any]], container: str) -> Termination | None:
    """The newest Pod's ``state.terminated`` (or ``lastState.terminated``) of ``container``.

    On a real cluster this is where a worker's exit code lives: the Job's own Failed
    condition only says ``BackoffLimitExceeded``."""
    for pod in sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if term:
                return Termination(pod["metadata"]["name"], int(term.get("exitCode", 0)), term.get("reason") or "",
                                   term.get("signal"), (term.get("message") or "").strip())
    return None
