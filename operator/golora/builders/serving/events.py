"""Which AdapterServings an event concerns, as pure functions of the event's object and of
kopf's index of AdapterServings (``refs``: namespace -> the :func:`ref` of each one). The
handler reconciles the names these return; every other event is dropped here."""

from __future__ import annotations

from typing import Any

from ... import conditions as cond
from ... import naming
from ..status import job_state
from .outcome import ROLLED_OUT, ROLLING_OUT
from .record import ANNOTATION, read_record
from .targets import selector_matches

# Phases in which a slow timer asks GET /v1/models again (RollingOut: also to catch a
# crash-looping server).
RECHECK_PHASES = (ROLLING_OUT, ROLLED_OUT)


def ref(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """An AdapterServing as the index keeps it: its targets and its training."""
    targets = spec.get("targets") or {}
    return {
        "name": name,
        "deployments": tuple(targets.get("deployments") or ()),
        "selector": dict((targets.get("selector") or {}).get("matchLabels") or {}),
        "training": (spec.get("trainingRef") or {}).get("name"),
    }


def _refs_in(refs: Any, namespace: str | None) -> list[dict[str, Any]]:
    """A snapshot of the namespace's refs (kopf updates the index while reconciles run)."""
    return list(refs.get(namespace, [])) if refs is not None else []


def targeting(deployment: dict[str, Any], refs: Any) -> set[str]:
    """The AdapterServings whose targets name or select ``deployment``."""
    meta = deployment.get("metadata") or {}
    dname, labels = meta.get("name"), meta.get("labels") or {}
    return {r["name"] for r in _refs_in(refs, meta.get("namespace"))
            if dname in r["deployments"] or (r["selector"] and selector_matches(r["selector"], labels))}


def deployment_relevant(deployment: dict[str, Any], refs: Any) -> bool:
    """golora has an entry on it, or an AdapterServing targets it."""
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    return ANNOTATION in annotations or bool(targeting(deployment, refs))


def for_deployment(deployment: dict[str, Any], refs: Any) -> list[str]:
    """Reconcile these on a Deployment's event: those targeting it and those with an entry on it."""
    return sorted(targeting(deployment, refs) | read_record(deployment).owners())


def for_training(training: dict[str, Any], refs: Any) -> list[str]:
    """The AdapterServings that reference this LoraTraining (in the index's order)."""
    meta = training.get("metadata") or {}
    return [r["name"] for r in _refs_in(refs, meta.get("namespace")) if r["training"] == meta.get("name")]


def training_fingerprint(training: dict[str, Any], event_type: str | None) -> tuple[Any, ...]:
    """What of a LoraTraining an AdapterServing depends on; progress reports leave it alone
    (``attempt`` and ``finishedAt``: a retrain writes new files to the same path)."""
    meta, status = training.get("metadata") or {}, training.get("status") or {}
    gate = cond.get_condition(status.get("conditions"), cond.QUALITY_GATE_PASSED) or {}
    result = status.get("result") or {}
    return (event_type == "DELETED", meta.get("generation"), status.get("phase"), gate.get("status"),
            result.get("adapterPath"), result.get("rank"), result.get("baseModel"),
            result.get("attempt"), result.get("finishedAt"))


def finished_check_job_owner(job: dict[str, Any]) -> str | None:
    """The AdapterServing a validation Job belongs to, once the Job finished (None: not yet)."""
    name = (job.get("metadata") or {}).get("labels", {}).get(naming.LABEL_NAME)
    return name if name and job_state(job).phase in (cond.SUCCEEDED, cond.FAILED) else None


def needs_recheck(phase: str | None) -> bool:
    return phase in RECHECK_PHASES
