"""Condition types, phases and the one helper that sets a condition.

Conditions follow metav1.Condition: set by type; ``lastTransitionTime`` changes only
when ``status`` changes; ``observedGeneration`` says which spec they describe.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

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


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: str,
    reason: str,
    message: str = "",
    generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """Return a new conditions list with ``type_`` set; others are kept in order."""
    if status not in (TRUE, FALSE, UNKNOWN):
        raise ValueError(f"condition status must be True/False/Unknown, not {status!r}")
    out: list[dict[str, Any]] = []
    found = False
    for cond in conditions or []:
        if cond.get("type") != type_:
            out.append(dict(cond))
            continue
        found = True
        changed = cond.get("status") != status
        out.append({
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": (now or now_rfc3339()) if changed else cond.get("lastTransitionTime") or now or now_rfc3339(),
            "observedGeneration": generation,
        })
    if not found:
        out.append({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": now or now_rfc3339(), "observedGeneration": generation,
        })
    return out


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    for cond in conditions or []:
        if cond.get("type") == type_:
            return cond
    return None


def is_true(conditions: list[dict[str, Any]] | None, type_: str) -> bool:
    cond = get_condition(conditions, type_)
    return bool(cond and cond.get("status") == TRUE)
