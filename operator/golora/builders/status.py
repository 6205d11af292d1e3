"""Pure status computations: what a Job's status means for its CR, whether a spec is
accepted, and the status patch that says so (phase, message, conditions)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from .. import conditions as cond

Condition = tuple[str, str, str, str]  # type, status, reason, message


@dataclass(frozen=True)
class JobState:
    phase: str  # Pending, Running, Succeeded, Failed
    reason: str
    message: str


def job_state(job: dict[str, Any]) -> JobState:
    """Read a Job's status like `kubectl describe job` would."""
    status = job.get("status") or {}
    for condition in status.get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return JobState(cond.SUCCEEDED, "JobComplete", condition.get("message") or "Job completed")
        if condition.get("type") == "Failed":
            return JobState(cond.FAILED, cond.as_reason(condition.get("reason"), "JobFailed"),
                            condition.get("message") or "Job failed")
    # ``active`` counts pods that exist (a pending, unschedulable one too); ``ready`` counts
    # pods whose containers run.
    if status.get("ready"):
        return JobState(cond.RUNNING, "JobRunning", "Job is running")
    if status.get("active"):
        return JobState(cond.PENDING, "PodPending", "the Job's pod is waiting to run")
    return JobState(cond.PENDING, "JobPending", "Job is waiting to start")


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line per problem: ``spec.lora.r: Input should be greater than 0``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


@dataclass(frozen=True)
class Acceptance:
    """Whether a spec is accepted, and what the status says about it: ``spec`` is the parsed
    model (None: Invalid); ``phase``/``message`` None keep what the status has."""

    spec: BaseModel | None
    phase: str | None
    message: str | None
    conditions: list[Condition] = field(default_factory=list)

    def patch(self, status: dict[str, Any] | None, generation: int | None, *, conditions: list[Condition] = (),
              phase: str | None = None, message: str | None = None,
              extra: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """The status patch for this acceptance plus what the handler adds (later wins)."""
        status = status or {}
        phase = phase or self.phase or status.get("phase")
        message = message if message is not None else self.message if self.message is not None \
            else status.get("message")
        return status_patch(status, phase=phase, message=message, generation=generation,  # type: ignore[arg-type]
                            conditions=[*self.conditions, *conditions], extra=extra)


def acceptance(model: type[BaseModel], spec: dict[str, Any], status: dict[str, Any] | None,
               generation: int | None) -> Acceptance:
    """Validate ``spec`` with its kind's model. The apiserver's schema and CEL rules catch most
    mistakes at admission; this catches the rest (and specs admitted by an older CRD): the
    object gets ``Accepted=False`` / phase ``Invalid`` with the reason, and nothing runs. A
    valid spec is Accepted, and Pending if nothing started yet; a Ready about an older
    generation is replaced (it must not stand next to this spec)."""
    status = status or {}
    try:
        parsed = model.model_validate(dict(spec))
    except ValidationError as exc:
        message = describe_validation_error(exc)
        return Acceptance(None, cond.INVALID, message, [(cond.ACCEPTED, cond.FALSE, cond.REASON_INVALID_SPEC, message),
                                                     (cond.READY, cond.FALSE, cond.REASON_INVALID_SPEC, message)])
    conditions: list[Condition] = [(cond.ACCEPTED, cond.TRUE, "Valid", "spec is valid")]
    ready = cond.get_condition(status.get("conditions"), cond.READY)
    if ready is None or ready.get("observedGeneration") != generation:
        conditions.append((cond.READY, cond.FALSE, cond.REASON_RECONCILING,
                           f"golora is acting on generation {generation} of the spec"))
    if status.get("phase") in (None, cond.INVALID):
        return Acceptance(parsed, cond.PENDING, "accepted; waiting to start", conditions)
    return Acceptance(parsed, None, None, conditions)


# What a kind's Ready condition is, given its other conditions and the generation:
# (status, reason, message).
ReadyRule = Callable[[list[dict[str, Any]], int | None], tuple[str, str, str]]


def status_patch(
    current: dict[str, Any] | None,
    *,
    phase: str,
    message: str,
    generation: int | None,
    conditions: list[tuple[str, str, str, str]],
    extra: dict[str, Any] | None = None,
    ready: ReadyRule | None = None,
) -> dict[str, Any] | None:
    """The status merge-patch for a new phase/conditions, or None if nothing would change
    (so an idempotent reconcile makes no write).

    ``observedGeneration`` is part of every patch that writes something else, so a status is
    never about a spec other than the one it says; ``ready`` (a kind's rule) derives the
    ``Ready`` condition from the others."""
    current = current or {}
    conds = current.get("conditions")
    for type_, status, reason, msg in conditions:
        conds = cond.set_condition(conds, type_, status, reason, msg, generation)
    if ready is not None:
        conds = cond.set_condition(conds, cond.READY, *ready(conds or [], generation), generation)
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
    if patch and generation is not None and current.get("observedGeneration") != generation:
        patch["observedGeneration"] = generation
    return patch or None


def _current(conds: list[dict[str, Any]], type_: str, generation: int | None) -> dict[str, Any] | None:
    """The condition of ``type_`` if it was computed for ``generation`` (an older one is stale)."""
    condition = cond.get_condition(conds, type_)
    if condition is None or (generation is not None and condition.get("observedGeneration") not in (None, generation)):
        return None
    return condition


def _blocking(conds: list[dict[str, Any]], generation: int | None, order: tuple[str, ...],
              default: tuple[str, str]) -> tuple[str, str, str]:
    """Ready=False with the reason of the first condition in ``order`` that is not True."""
    for type_ in order:
        condition = _current(conds, type_, generation)
        if condition is None:
            continue
        if condition.get("status") != cond.TRUE:
            return cond.FALSE, condition["reason"], condition.get("message") or f"{type_} is {condition['status']}"
    return cond.FALSE, *default


def training_ready(gate_disabled_reason: str) -> ReadyRule:
    """LoraTraining Ready: the adapter is written and its quality gate passed (or is disabled)."""
    def rule(conds: list[dict[str, Any]], generation: int | None) -> tuple[str, str, str]:
        done = _current(conds, cond.SUCCEEDED_CONDITION, generation)
        gate = _current(conds, cond.QUALITY_GATE_PASSED, generation)
        if done is not None and done.get("status") == cond.TRUE:
            if gate is not None and (gate.get("status") == cond.TRUE or gate.get("reason") == gate_disabled_reason):
                return cond.TRUE, "AdapterReady", done.get("message") or "adapter written"
            return cond.FALSE, "QualityGateNotPassed", (gate or {}).get("message") or "the quality gate did not pass"
        if done is not None:
            return cond.FALSE, done["reason"], done.get("message") or ""
        return _blocking(conds, generation, (cond.ACCEPTED, cond.DATASET_READY, cond.SCHEDULED, cond.TRAINING),
                         ("Training", "training has not finished"))
    return rule


def serving_ready(conds: list[dict[str, Any]], generation: int | None) -> tuple[str, str, str]:
    """AdapterServing Ready: every target serves the adapter (Serving=True)."""
    serving = _current(conds, cond.SERVING, generation)
    if serving is not None and serving.get("status") == cond.TRUE:
        return cond.TRUE, "Serving", serving.get("message") or "served on every target"
    return _blocking(conds, generation, (cond.ACCEPTED, cond.ADAPTER_VALIDATED, cond.PATCHED, cond.ROLLED_OUT, cond.SERVING),
                     ("NotServing", "the adapter is not served yet"))


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
