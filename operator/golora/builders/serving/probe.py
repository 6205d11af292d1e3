"""Asking vLLM whether it serves the adapter (``GET /v1/models``): which URLs to ask, and what
the answers mean. The handler does the HTTP requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import conditions as cond
from ...vllm import MODELS_PATH
from .checks import find_container
from .rollout import container_port


@dataclass(frozen=True)
class Probe:
    """One target's answer: served True/False, None when nobody answered."""

    served: bool | None
    message: str


def is_ready(pod: dict[str, Any]) -> bool:
    """A pod that can answer: Ready, with an IP, not being deleted."""
    status = pod.get("status") or {}
    return (not (pod.get("metadata") or {}).get("deletionTimestamp") and bool(status.get("podIP"))
            and cond.is_true(status.get("conditions"), cond.READY))


def ready_pods(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The pods that can answer (:func:`is_ready`)."""
    return [pod for pod in pods if is_ready(pod)]


def port_of(deployment: dict[str, Any], container_name: str) -> int:
    """The port the Deployment's engine container listens on."""
    container, _ = find_container(deployment, container_name)
    return container_port(container or {})


def per_pod(template: str) -> bool:
    """Ask every ready pod by IP (``GOLORA_MODELS_URL`` names ``{pod_ip}``), else once per Deployment."""
    return "{pod_ip}" in template


def pod_url(template: str, ns: str, deployment: str, port: int, pod: dict[str, Any]) -> str:
    """One pod's base URL (runtime loading talks to every pod, whatever the template names)."""
    return template.format(pod_ip=pod["status"]["podIP"], port=port, namespace=ns, deployment=deployment)


def urls(template: str, ns: str, deployment: str, port: int, pods: list[dict[str, Any]]) -> list[str]:
    """The base URLs to ask (``pods``: the ready ones, used when the template names ``{pod_ip}``)."""
    if per_pod(template):
        return [pod_url(template, ns, deployment, port, p) for p in pods]
    return [template.format(port=port, namespace=ns, deployment=deployment)]


def no_ready_pods(deployment: str) -> Probe:
    return Probe(None, f"{deployment}: no ready pods to ask GET /v1/models")


def unreachable(deployment: str, url: str, error: object) -> Probe:
    return Probe(None, f"{deployment}: GET {url}{MODELS_PATH} failed: {error}")


def verdict(deployment: str, served_name: str, listed: dict[str, list[str]]) -> Probe:
    """Served when every URL lists ``served_name`` (``listed``: URL -> the model ids it listed)."""
    missing = [url for url, ids in listed.items() if served_name not in ids]
    if missing:
        return Probe(False, f"{deployment}: {served_name} not listed by GET /v1/models at {', '.join(missing)}")
    return Probe(True, f"{deployment}: {served_name} listed by GET /v1/models on {len(listed)} endpoint(s)")
