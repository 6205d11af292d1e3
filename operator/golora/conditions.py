"""Condition types, phases and the one helper that sets a condition.

Conditions follow metav1.Condition: set by type; ``lastTransitionTime`` changes only
when ``status`` changes; ``observedGeneration`` says which spec they describe.
"""

from __future__ import annotations

import re
from typing import Any

from .api import common as _schema  # metav1.Condition's rules, declared once for the CRDs
from .timestamps import now_rfc3339

# Phases (status.phase)
PENDING = "Pending"
RUNNING = "Running"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
INVALID = "Invalid"

# Condition types shared by all kinds
ACCEPTED = "Accepted"
READY = "Ready"

# GoDataset
EXTRACTED = "Extracted"

# LoraTraining
DATASET_READY = "DatasetReady"
SCHEDULED = "Scheduled"
TRAINING = "Training"
SUCCEEDED_CONDITION = "Succeeded"
QUALITY_GATE_PASSED = "QualityGatePassed"

# AdapterServing
ADAPTER_VALIDATED = "AdapterValidated"
PATCHED = "Patched"
ROLLED_OUT = "RolledOut"
SERVING = "Serving"
# True = a warning: a GPU Deployment that rolls out with surge never finishes on a one-GPU node.
GPU_SURGE_RISK = "GPUSurgeRisk"

TRUE, FALSE, UNKNOWN = "True", "False", "Unknown"

# The one rule for the Event golora posts when it writes a new phase: a Warning for these.
WARNING_PHASES = (FAILED, INVALID)


def phase_event_type(phase: str) -> str:
    return "Warning" if phase in WARNING_PHASES else "Normal"


def phase_event(patch: dict | None, old_phase: str | None) -> dict[str, str] | None:
    """The one rule for a CR's phase Event: a status patch that moves the phase gets one Event,
    the new phase as its reason (a Warning for Failed and Invalid); anything else gets none."""
    if not patch or "phase" not in patch or patch["phase"] == old_phase:
        return None
    return {"type": phase_event_type(patch["phase"]), "reason": patch["phase"], "message": patch.get("message") or ""}


# Reasons of Ready=False that are not some other condition's reason.
REASON_RECONCILING = "Reconciling"  # a new generation: golora has not computed its status yet
REASON_INVALID_SPEC = "InvalidSpec"

_TYPE_RE = re.compile(_schema.CONDITION_TYPE_PATTERN)
_REASON_RE = re.compile(_schema.CONDITION_REASON_PATTERN)


def valid_type(type_: str) -> bool:
    return isinstance(type_, str) and len(type_) <= _schema.CONDITION_TYPE_MAX and bool(_TYPE_RE.match(type_))


def valid_reason(reason: str) -> bool:
    return isinstance(reason, str) and 0 < len(reason) <= _schema.CONDITION_REASON_MAX and bool(_REASON_RE.match(reason))


def as_reason(text: Any, fallback: str) -> str:
    """A reason from outside golora's code (a worker's result, a Job's or Pod's condition)
    made valid for metav1.Condition: kept if valid, else its letters/digits, else ``fallback``."""
    if valid_reason(text):
        return text
    cleaned = re.sub(r"[^A-Za-z0-9_]", "", str(text or ""))
    cleaned = re.sub(r"^[^A-Za-z]+", "", cleaned)[:_schema.CONDITION_REASON_MAX]
    return cleaned if valid_reason(cleaned) else fallback


def _complete(cond: dict[str, Any], now: str) -> dict[str, Any]:
    """An existing condition (possibly written by an older golora, or by hand) with every field
    metav1.Condition requires, so rewriting the list never fails validation."""
    out = dict(cond)
    out["reason"] = as_reason(out.get("reason"), "Unknown")
    out["message"] = str(out.get("message") or "")[:_schema.CONDITION_MESSAGE_MAX]
    out.setdefault("lastTransitionTime", now)
    if out.get("lastTransitionTime") is None:
        out["lastTransitionTime"] = now
    if out.get("observedGeneration") is None:
        out.pop("observedGeneration", None)
    return out


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str = "",
    generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return a new conditions list with ``type_`` set; others are kept in order.

    Every condition returned satisfies metav1.Condition's schema (the CRDs declare it): a
    type or reason it would reject raises ValueError here; a message is cut to its maximum."""
    if status not in (TRUE, FALSE, UNKNOWN):
        raise ValueError(f"condition status must be True/False/Unknown, not {status!r}")
    if not valid_type(type_):
        raise ValueError(f"invalid condition type {type_!r}")
    if not valid_reason(reason):
        raise ValueError(f"invalid condition reason {reason!r} (metav1.Condition: CamelCase, {_schema.CONDITION_REASON_PATTERN})")
    if generation is not None and generation < 0:
        raise ValueError(f"observedGeneration must be >= 0, not {generation}")
    now = now or now_rfc3339()
    message = str(message or "")[:_schema.CONDITION_MESSAGE_MAX]
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions or []:
        if cond.get("type") != type_:
            out.append(_complete(cond, now))
            continue
        found = True
        changed = cond.get("status") != status
        new = {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now if changed else cond.get("lastTransitionTime") or now,
        }
        if generation is not None:
            new["observedGeneration"] = generation
        out.append(new)
    if not found:
        new = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": now}
        if generation is not None:
            new["observedGeneration"] = generation
        out.append(new)
    return out


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for cond in conditions or []:
        if cond.get("type") == type_:
            return cond
    return None


def is_true(conditions: list[dict[str, Any]] | None, type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return bool(cond and cond.get("status") == TRUE)
