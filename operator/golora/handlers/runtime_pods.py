"""Runtime loading follows the pods: a pod of a Deployment with Runtime adapters that becomes
ready (a restart, a scale-up, a rescheduled pod, a container restarted in place) gets every
adapter loaded again by a reconcile of each AdapterServing on it. Driven by kopf's pod watch
(no polling); vLLM's filesystem resolver covers the moments before golora's load arrives."""

from __future__ import annotations

from typing import Any

import kopf

from ..builders import runtime_load, serving
from ..builders.serving import probe
from .adapterserving import _reconcile_quietly


@kopf.index("apps", "v1", "deployments")
def runtime_deployments(namespace: str, name: str, annotations: kopf.Annotations, **_: Any
                        ) -> dict[tuple[str, str], list[str]]:
    """(namespace, Deployment) -> the AdapterServings loading adapters into its pods at run time."""
    record = serving.read_record({"metadata": {"annotations": dict(annotations)}})
    owners = sorted({a.owner for a in record.adapters if a.runtime})
    return {(namespace, name): owners} if owners else {}


def _owners(body: kopf.Body, runtime_deployments: Any) -> set[str]:
    dep = runtime_load.deployment_of_pod(dict(body))
    key = ((body.get("metadata") or {}).get("namespace"), dep)
    if dep is None or runtime_deployments is None or key not in runtime_deployments:
        return set()
    return {owner for owners in list(runtime_deployments[key]) for owner in owners}


def _runtime_pod(body: kopf.Body, runtime_deployments: Any = None, **_: Any) -> bool:
    return bool(_owners(body, runtime_deployments))


_ready_seen: dict[tuple[str, str], bool] = {}


@kopf.on.event("", "v1", "pods", when=_runtime_pod)
def follow_pod(body: kopf.Body, type: str | None, runtime_deployments: Any, **_: Any) -> None:
    """A pod became ready (or went away): reconcile the Runtime AdapterServings of its Deployment."""
    meta = body.get("metadata") or {}
    key = (meta.get("namespace"), meta.get("uid"))
    if type == "DELETED":
        _ready_seen.pop(key, None)
        return
    ready = probe.is_ready(dict(body))
    if _ready_seen.get(key) == ready:
        return
    _ready_seen[key] = ready
    if ready:
        for owner in sorted(_owners(body, runtime_deployments)):
            _reconcile_quietly(meta["namespace"], owner)
