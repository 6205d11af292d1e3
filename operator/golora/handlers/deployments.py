"""AdapterServing's reads and writes of Deployments and their pods: the one writer per
Deployment (a lock, server-side apply as ``golora`` with the read resourceVersion as a
precondition, retried on a conflict), the pods, the engine's log, the ``GET /v1/models`` probe.
What to write and what the answers mean are ``golora.builders.serving``'s decisions."""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf
import kubernetes

from .. import kube, naming, vllm
from ..api.adapterserving import KIND
from ..builders import serving
from ..builders.serving import probe, targets
from ..settings import current as current_settings
from ..vllm import http as vllm_http

log = logging.getLogger("golora.adapterserving")

APPLY_ATTEMPTS = 5


def apps() -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(kube.client())


def to_dict(obj: Any) -> dict[str, Any]:
    """An API object as a plain dict (one already is: kept as it is)."""
    return obj if isinstance(obj, dict) else kube.client().sanitize_for_serialization(obj)


# --- Locks: one reconcile per AdapterServing, one writer per Deployment at a time ----------------

_locks: dict[tuple[str, ...], threading.Lock] = {}
_locks_guard = threading.Lock()


def lock(*key: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


# --- Deployments -------------------------------------------------------------------------------

def list_deployments(ns: str) -> list[dict[str, Any]]:
    return [to_dict(d) for d in apps().list_namespaced_deployment(ns).items]


def confirm_live(ns: str, owners: set[str], live: set[str]) -> set[str]:
    """``live`` plus those of ``owners`` that exist now (created after ``live`` was listed)."""
    out = set(live)
    for owner in owners - live:
        obj = kube.get_cr(KIND.plural, ns, owner)
        if obj is not None and not obj["metadata"].get("deletionTimestamp"):
            out.add(owner)
    return out


class Refused(Exception):
    """A check failed on the Deployment as it is now (e.g. another AdapterServing took the
    name between golora's read and its write)."""

    def __init__(self, problems: list[serving.Problem]):
        super().__init__("; ".join(p.message for p in problems))
        self.problems = problems


def update_deployment(deployment: dict[str, Any], owner: str, entry: serving.AdapterEntry | None,
                      live: set[str]) -> tuple[dict[str, Any], serving.Plan, bool]:
    """Make ``deployment`` serve ``entry`` for ``owner`` (None: remove owner's adapter).
    Server-side apply as ``golora`` with the read resourceVersion as a precondition; on a
    conflict, read again, check again and recompute. Returns (deployment now, plan, written)."""
    meta = deployment["metadata"]
    ns, name = meta["namespace"], meta["name"]
    with lock("deployment", ns, name):
        for _ in range(APPLY_ATTEMPTS):
            live = confirm_live(ns, serving.read_record(deployment).owners() - {owner}, live)
            problems, plan = serving.plan_for_owner(deployment, owner, entry, live)
            if plan is None:
                raise Refused(problems)
            if not plan.changed:
                return deployment, plan, False
            try:
                resp = apps().patch_namespaced_deployment(
                    name, ns, plan.body, field_manager=naming.FIELD_MANAGER, force=True,
                    _content_type="application/apply-patch+yaml")
            except kubernetes.client.ApiException as exc:
                if exc.status == 404:
                    raise kopf.TemporaryError(f"Deployment {name} disappeared", delay=2) from exc
                if exc.status != 409:
                    raise
                deployment = to_dict(apps().read_namespaced_deployment(name, ns))
                continue
            log.info("patched Deployment %s/%s (generation %s): %s", ns, name, resp.metadata.generation,
                     ", ".join(a.name for a in plan.record.adapters) or "golora's part removed")
            return to_dict(resp), plan, True
    raise kopf.TemporaryError(f"Deployment {name} kept changing while golora patched it", delay=2)


def pods(ns: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    selector = targets.pod_selector(deployment)
    if not selector:
        return []
    return [to_dict(p) for p in kube.core().list_namespaced_pod(ns, label_selector=selector).items]


def ready_pods(ns: str, deployment: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployment's pods that can answer (Ready, with an IP, not being deleted)."""
    return probe.ready_pods(pods(ns, deployment))


def server_log_line(ns: str, crash: serving.EngineCrash, container: str) -> str:
    """Why vLLM stopped, from the failed container's log (the previous run if it restarted)."""
    for previous in (True, False):
        try:
            text = kube.core().read_namespaced_pod_log(crash.pod, ns, container=container, previous=previous,
                                                       tail_lines=200)
        except kubernetes.client.ApiException:
            continue
        line = vllm.last_meaningful_line(text or "")
        if line:
            return line
    return crash.message or f"exit code {crash.exit_code} ({crash.reason})"


def probe_serving(ns: str, deployment: dict[str, Any], container_name: str, served_name: str) -> serving.Probe:
    """Whether every ready pod lists ``served_name`` in GET /v1/models (None: nobody to ask)."""
    name = deployment["metadata"]["name"]
    template = current_settings().models_url
    ready = ready_pods(ns, deployment) if probe.per_pod(template) else []
    urls = probe.urls(template, ns, name, probe.port_of(deployment, container_name), ready)
    if not urls:
        return probe.no_ready_pods(name)
    listed: dict[str, list[str]] = {}
    for url in urls:
        try:
            listed[url] = vllm_http.model_ids(url)
        except (OSError, ValueError) as exc:  # urllib's URLError and HTTPError are OSErrors
            return probe.unreachable(name, url, exc)
    return probe.verdict(name, served_name, listed)
