"""kopf configuration: golora's own annotation prefix and finalizer, a diff base that
ignores GitOps tracking metadata, and watch timeouts that survive silent stalls."""

from __future__ import annotations

import logging
from typing import Any

import kopf

from . import naming
from .settings import current as current_settings


class GitOpsTolerantDiffBase(kopf.AnnotationsDiffBaseStorage):
    """The diff base without the labels/annotations Argo CD writes, so a sync that only
    touches tracking metadata never looks like a spec change (no handler re-runs)."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        meta = essence.get("metadata", {})
        labels = meta.get("labels") or {}
        for key in naming.GITOPS_LABELS:
            labels.pop(key, None)
        annotations = meta.get("annotations") or {}
        for key in list(annotations):
            if key.startswith(naming.GITOPS_ANNOTATION_PREFIXES):
                annotations.pop(key)
        self.remove_empty_stanzas(essence)
        return essence


def configure(settings: kopf.OperatorSettings) -> None:
    """Apply golora's settings (used by the startup handler and by tests)."""
    ours = current_settings()
    settings.persistence.finalizer = naming.FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=naming.KOPF_PREFIX, v1=False)
    settings.persistence.diffbase_storage = GitOpsTolerantDiffBase(
        prefix=naming.KOPF_PREFIX, key=naming.DIFFBASE_KEY, v1=False
    )
    # Only warnings from kopf's own log become Events; golora posts its phase transitions itself.
    settings.posting.level = logging.WARNING
    settings.watching.connect_timeout = 30
    settings.watching.server_timeout = ours.watch_server_timeout
    settings.watching.client_timeout = settings.watching.server_timeout + 10
    settings.networking.request_timeout = 60
    settings.execution.default_backoff = ours.backoff
    # Handlers are sync and I/O-bound (a few API calls each): more threads, less queueing.
    settings.execution.max_workers = ours.workers
    # After its own patch kopf waits for the patched version before handling the object again.
    # Under a burst (hundreds of CRs at once) the watch lags more than kopf's default 5 s, and
    # an object seen without its just-written annotations would be handled twice.
    settings.persistence.consistency_timeout = ours.consistency_timeout
    settings.queueing.error_delays = [1, 2, 5, 10, 30, 60]


@kopf.on.startup()
def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
    configure(settings)


@kopf.on.login()
def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In-cluster service account, else $KUBECONFIG / ~/.kube/config, read at login time."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
