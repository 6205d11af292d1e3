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
    if status.get("active") or status.get("startTime"):
        return JobState(c.RUNNING, "JobRunning", "Job is running")
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

