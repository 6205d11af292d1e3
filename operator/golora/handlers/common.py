"""Glue shared by the per-kind handlers: validate a spec with its pydantic model and
record the outcome as the ``Accepted`` condition, a phase and an Event."""

from __future__ import annotations

from typing import Any

import kopf
from pydantic import BaseModel, ValidationError

from .. import conditions as c


def describe_validation_error(exc: ValidationError) -> str:
    """One readable line per problem: ``spec.lora.r: Input should be greater than 0``."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{loc}: {err['msg']}" if loc else err["msg"])
    return "; ".join(parts)


def set_phase(patch: kopf.Patch, body: kopf.Body, phase: str, message: str, *, warning: bool = False) -> None:
    """Set phase and message; post an Event only when the phase actually changes."""
    old = patch.status.get("phase") or (body.get("status") or {}).get("phase")
    patch.status["phase"] = phase
    patch.status["message"] = message
    if old != phase:
        kopf.event(body, type="Warning" if warning else "Normal", reason=phase, message=message)


def set_condition(patch: kopf.Patch, body: kopf.Body, type_: str, status: str, reason: str, message: str) -> None:
    current = patch.status.get("conditions")
    if current is None:
        current = (body.get("status") or {}).get("conditions")
    generation = body.get("metadata", {}).get("generation")
    patch.status["conditions"] = c.set_condition(current, type_, status, reason, message, generation)


def accept(model: type[BaseModel], spec: dict[str, Any], body: kopf.Body, patch: kopf.Patch) -> BaseModel | None:
    """Validate ``spec``; on success mark Accepted and (if nothing started yet) Pending.

    The apiserver's schema and CEL rules catch most mistakes at admission; this catches
    the rest (and specs admitted by an older CRD) without crash-looping: the object gets
    ``Accepted=False`` / phase ``Invalid`` with the reason, and nothing runs.
    """
    from .. import metrics

    generation = body.get("metadata", {}).get("generation")
    patch.status["observedGeneration"] = generation
    try:
        parsed = model.model_validate(dict(spec))
    except ValidationError as exc:
        message = describe_validation_error(exc)
        set_condition(patch, body, c.ACCEPTED, c.FALSE, c.REASON_INVALID_SPEC, message)
        set_condition(patch, body, c.READY, c.FALSE, c.REASON_INVALID_SPEC, message)
        set_phase(patch, body, c.INVALID, message, warning=True)
        metrics.record_reconcile(body.get("kind", ""), "invalid")
        return None
    metrics.record_reconcile(body.get("kind", ""), "accepted")
    set_condition(patch, body, c.ACCEPTED, c.TRUE, "Valid", "spec is valid")
    ready = c.get_condition((body.get("status") or {}).get("conditions"), c.READY)
    if ready is None or ready.get("observedGeneration") != generation:
        # A Ready=True about the previous spec must not stand next to this generation.
        set_condition(patch, body, c.READY, c.FALSE, c.REASON_RECONCILING,
                      f"golora is acting on generation {generation} of the spec")
    phase = (body.get("status") or {}).get("phase")
    if phase in (None, c.INVALID):
        set_phase(patch, body, c.PENDING, "accepted; waiting to start")
    return parsed
