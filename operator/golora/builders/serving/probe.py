"""Asking vLLM whether it serves the adapter (``GET /v1/models``): which URLs to ask, and what
the answers mean. The handler does the HTTP requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import conditions as cond


@dataclass(frozen=True)
class Probe:
    """One target's answer: served True/False, None when nobody answered."""

    served: bool | None
    message: str


def ready_pods(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pods that can answer: Ready, with an IP, not being deleted."""
    ready = []
    for pod in pods:
        status = pod.get("status") or {}
        if pod["metadata"].get("deletionTimestamp") or not status.get("podIP"):
            continue
        if cond.is_true(status.get("conditions"), "Ready"):
            ready.append(pod)
    return ready


def per_pod(template: str) -> bool:
    """Ask every ready pod by IP (``GOLORA_MODELS_URL`` names ``{pod_ip}``), else once per Deployment."""
    return "{pod_ip}" in template


def urls(template: str, ns: str, deployment: str, port: int, pods: list[dict[str, Any]]) -> list[str]:
    """The base URLs to ask (``pods``: the ready ones, used when the template names ``{pod_ip}``)."""
    if per_pod(template):
        return [template.format(pod_ip=p["status"]["podIP"], port=port, namespace=ns, deployment=deployment)
                for p in pods]
    return [template.format(port=port, namespace=ns, deployment=deployment)]


def no_ready_pods(deployment: str) -> Probe:
    return Probe(None, f"{deployment}: no ready pods to ask GET /v1/models")


def unreachable(deployment: str, url: str, error: object) -> Probe:
    return Probe(None, f"{deployment}: GET {url}/v1/models failed: {error}")


def verdict(deployment: str, served_name: str, listed: dict[str, list[str]]) -> Probe:
    """Served when every URL lists ``served_name`` (``listed``: URL -> the model ids it listed)."""
    missing = [url for url, ids in listed.items() if served_name not in ids]
    if missing:
        return Probe(False, f"{deployment}: {served_name} not listed by GET /v1/models at {', '.join(missing)}")
    return Probe(True, f"{deployment}: {served_name} listed by GET /v1/models on {len(listed)} endpoint(s)")
