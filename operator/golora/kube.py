"""The few Kubernetes API calls golora makes, as small idempotent helpers (create-or-adopt,
the one status writer). Handlers stay thin; builders stay pure."""

from __future__ import annotations

import functools
from typing import Any

import kopf
import kubernetes

from .api import GROUP, VERSION
from .conditions import phase_event


@functools.cache
def client() -> kubernetes.client.ApiClient:
    """One API client per process: in-cluster config, else $KUBECONFIG (read now, not at import)."""
    import os

    try:
        kubernetes.config.load_incluster_config()
        return kubernetes.client.ApiClient()
    except kubernetes.config.ConfigException:
        return kubernetes.config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))


def batch() -> kubernetes.client.BatchV1Api:
    return kubernetes.client.BatchV1Api(client())


def core() -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(client())


def custom() -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(client())


def create_or_adopt(obj: dict[str, Any]) -> tuple[dict[str, Any] | Any, bool]:
    """Create ``obj``; if it already exists (a restarted operator), return the existing one.
    Returns (object, created)."""
    kind, ns, name = obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]
    create, read = {
        "Job": (lambda: batch().create_namespaced_job(ns, obj), lambda: batch().read_namespaced_job(name, ns)),
        "Service": (lambda: core().create_namespaced_service(ns, obj), lambda: core().read_namespaced_service(name, ns)),
        "ServiceAccount": (lambda: core().create_namespaced_service_account(ns, obj),
                           lambda: core().read_namespaced_service_account(name, ns)),
        "Role": (lambda: kubernetes.client.RbacAuthorizationV1Api(client()).create_namespaced_role(ns, obj),
                 lambda: kubernetes.client.RbacAuthorizationV1Api(client()).read_namespaced_role(name, ns)),
        "RoleBinding": (
            lambda: kubernetes.client.RbacAuthorizationV1Api(client()).create_namespaced_role_binding(ns, obj),
            lambda: kubernetes.client.RbacAuthorizationV1Api(client()).read_namespaced_role_binding(name, ns)),
    }[kind]
    try:
        return create(), True
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
        return read(), False


def get_cr(plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        return custom().get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    except kubernetes.client.ApiException as exc:
        if exc.status == 404:
            return None
        raise


def patch_cr_status(plural: str, namespace: str, name: str, status: dict[str, Any]) -> None:
    custom().patch_namespaced_custom_object_status(GROUP, VERSION, namespace, plural, name, {"status": status})


def write_status(plural: str, obj: dict[str, Any], patch: dict[str, Any] | None, *,
                 previous_phase: str | None = None) -> None:
    """The one way golora writes a CR's status: the merge patch a builder computed (none when
    it is empty), then, when the patch moves the phase, one Event with the phase as reason
    (a Warning for Failed and Invalid). ``previous_phase``: the phase an Event already
    announced, when it is not the one in ``obj``."""
    if not patch:
        return
    meta = obj["metadata"]
    patch_cr_status(plural, meta["namespace"], meta["name"], patch)
    event = phase_event(patch, previous_phase or (obj.get("status") or {}).get("phase"))
    if event is not None:
        kopf.event(obj, **event)


def list_jobs(namespace: str, labels: dict[str, str]) -> list[Any]:
    selector = ",".join(f"{k}={v}" for k, v in labels.items())
    return batch().list_namespaced_job(namespace, label_selector=selector).items


def job_pods(namespace: str, job: str) -> list[dict[str, Any]]:
    """The Pods the Job controller created for ``job`` (as plain dicts)."""
    from .builders.status import JOB_NAME_LABELS

    pods = core().list_namespaced_pod(namespace, label_selector=f"{JOB_NAME_LABELS[0]}={job}").items
    return [client().sanitize_for_serialization(p) for p in pods]


def delete_job(namespace: str, name: str) -> None:
    try:
        batch().delete_namespaced_job(name, namespace, propagation_policy="Background")
    except kubernetes.client.ApiException as exc:
        if exc.status != 404:
            raise


_ensured: set[str] = set()


def ensure_worker_identity(namespace: str) -> None:
    """The golora-worker ServiceAccount/Role/RoleBinding in ``namespace``, created once per
    operator process (later calls make no API request)."""
    from .builders.worker_rbac import worker_objects

    if namespace in _ensured:
        return
    for obj in worker_objects(namespace):
        create_or_adopt(obj)
    _ensured.add(namespace)
