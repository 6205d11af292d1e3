"""Names golora puts on objects: label and annotation keys, the finalizer, Job names.
One place, so handlers, builders, manifests and tests agree."""

from __future__ import annotations

import hashlib
import re

DOMAIN = "golora.dev"

LABEL_KIND = f"{DOMAIN}/kind"
LABEL_NAME = f"{DOMAIN}/name"
LABEL_GENERATION = f"{DOMAIN}/generation"
LABEL_ATTEMPT = f"{DOMAIN}/attempt"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "golora"

FINALIZER = f"{DOMAIN}/finalizer"
# kopf keeps its handler progress and diff base under this prefix (not kopf.zalando.org).
KOPF_PREFIX = DOMAIN
DIFFBASE_KEY = "last-handled-configuration"

FIELD_MANAGER = "golora"
WORKER_SERVICE_ACCOUNT = "golora-worker"

# Metadata that GitOps tools write and that must never look like a user's change.
GITOPS_LABELS = ("app.kubernetes.io/instance",)
GITOPS_ANNOTATION_PREFIXES = ("argocd.argoproj.io/", "kubectl.kubernetes.io/last-applied-configuration")

_MAX_NAME = 63


def job_name(kind_short: str, name: str, generation: int, attempt: int = 1) -> str:
    """Deterministic Job name from CR name + generation + attempt: a restarted operator
    finds the Job it created instead of making another. Truncated names keep a hash."""
    suffix = f"-{kind_short}-g{generation}-a{attempt}"
    base = re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-") or "x"
    if len(base) + len(suffix) > _MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        base = base[: _MAX_NAME - len(suffix) - 9].rstrip("-") + "-" + digest
    return base + suffix


def owner_labels(kind: str, name: str, generation: int | None = None, attempt: int | None = None) -> dict[str, str]:
    labels = {LABEL_KIND: kind, LABEL_NAME: name, LABEL_MANAGED_BY: MANAGED_BY}
    if generation is not None:
        labels[LABEL_GENERATION] = str(generation)
    if attempt is not None:
        labels[LABEL_ATTEMPT] = str(attempt)
    return labels
