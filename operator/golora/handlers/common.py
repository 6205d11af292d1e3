"""Glue shared by the per-kind handlers: validate a spec (``builders.status.acceptance``),
count the outcome, and write it with the one status writer."""

from __future__ import annotations

from typing import Any

import kopf

from .. import kube, metrics
from ..builders.status import Acceptance, acceptance


def accept(plural: str, model: type[Any], spec: dict[str, Any], body: kopf.Body, *,
           write: bool = True) -> Acceptance:
    """Validate ``spec``; write ``Accepted`` (and Invalid, or Pending if nothing started yet)
    unless ``write`` is False (the caller adds to the patch, or its reconcile writes it)."""
    meta = body.get("metadata") or {}
    result = acceptance(model, spec, body.get("status"), meta.get("generation"))
    metrics.record_reconcile(body.get("kind", ""), "invalid" if result.spec is None else "accepted")
    if write:
        kube.write_status(plural, dict(body), result.patch(body.get("status"), meta.get("generation")))
    return result
