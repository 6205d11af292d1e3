"""Reading and writing golora's custom resources from tests and bench/: one client shape, one
condition lookup, one condition builder, one phase wait, and the operator's install identity,
instead of a ``custom``/``get``/``cond`` of their own in every test file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes

from golora import naming
from tests.conftest import REPO, wait_for

GROUP, VERSION = "golora.dev", "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
PLURALS = {"GoDataset": "godatasets", "LoraTraining": "loratrainings", "AdapterServing": "adapterservings"}
FINISHED = ("Succeeded", "Failed")
T0 = "2026-01-01T00:00:00Z"  # lastTransitionTime of the conditions tests write themselves


# ---- the custom objects API ---------------------------------------------------------------------

def custom_objects(api: Any) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api)


def get_cr(api: Any, ns: str, plural: str, name: str) -> dict[str, Any]:
    return custom_objects(api).get_namespaced_custom_object(GROUP, VERSION, ns, plural, name)


def list_crs(api: Any, ns: str, plural: str) -> list[dict[str, Any]]:
    return custom_objects(api).list_namespaced_custom_object(GROUP, VERSION, ns, plural)["items"]


def create_cr(api: Any, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Create ``obj``; the plural comes from its ``kind``."""
    return custom_objects(api).create_namespaced_custom_object(GROUP, VERSION, ns, PLURALS[obj["kind"]], obj)


def patch_cr(api: Any, ns: str, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
    return custom_objects(api).patch_namespaced_custom_object(GROUP, VERSION, ns, plural, name, patch)


def patch_cr_status(api: Any, ns: str, plural: str, name: str, status: dict[str, Any]) -> dict[str, Any]:
    """Write ``status`` through the status subresource (what the operator and workers do)."""
    return custom_objects(api).patch_namespaced_custom_object_status(GROUP, VERSION, ns, plural, name,
                                                                     {"status": status})


def delete_cr(api: Any, ns: str, plural: str, name: str) -> Any:
    return custom_objects(api).delete_namespaced_custom_object(GROUP, VERSION, ns, plural, name)


def adapter_serving(name: str, served_name: str, targets: dict[str, Any], training: str | None = None,
                    **spec: Any) -> dict[str, Any]:
    """An AdapterServing ``name`` that serves ``served_name`` on ``targets`` (the adapter of
    LoraTraining ``training``, or ``adapterPath`` in ``spec``)."""
    body: dict[str, Any] = {"servedName": served_name, "targets": targets, **spec}
    if training:
        body["trainingRef"] = {"name": training}
    return {"apiVersion": API_VERSION, "kind": "AdapterServing", "metadata": {"name": name}, "spec": body}


# ---- status -------------------------------------------------------------------------------------

def phase_of(obj: dict[str, Any]) -> str | None:
    return (obj.get("status") or {}).get("phase")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The condition ``type_`` of ``obj``, or None while it has none (no status yet included)."""
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == type_), None)


def make_condition(type_: str, status: str, reason: str, message: str = "",
                   generation: int | None = None) -> dict[str, Any]:
    """A condition as golora writes it (valid for metav1.Condition), for statuses tests write."""
    out: dict[str, Any] = {"type": type_, "status": status, "reason": reason, "message": message,
                           "lastTransitionTime": T0}
    if generation is not None:
        out["observedGeneration"] = generation
    return out


def wait_for_phase(api: Any, ns: str, plural: str, name: str, phases: tuple[str, ...] = FINISHED, *,
                   timeout: float = 60, interval: float = 0.2) -> dict[str, Any]:
    """The object once its phase is one of ``phases`` (by default: finished)."""
    return wait_for(lambda: (o := get_cr(api, ns, plural, name)) and phase_of(o) in phases and o,
                    timeout=timeout, interval=interval, what=f"{plural} {name} in phase {phases}")


# ---- the operator's install identity ----------------------------------------------------------

def wait_handled(api: Any, ns: str, plural: str, name: str, timeout: float = 30) -> dict[str, Any]:
    """Until the operator's create handler has run to its end: kopf records the handled spec
    (the last-handled annotation) only after the handler returned. A test that then writes the
    status itself (standing in for a worker) cannot be overwritten by the handler's own writes
    (a LoraTraining's handler writes Accepted, then WaitingForDataset)."""
    key = f"{naming.KOPF_PREFIX}/last-handled-configuration"

    def handled() -> dict[str, Any] | None:
        obj = get_cr(api, ns, plural, name)
        return obj if phase_of(obj) and key in (obj["metadata"].get("annotations") or {}) else None
    return wait_for(handled, timeout=timeout, interval=0.2, what=f"{plural}/{name} handled by the operator")


def install_operator_identity(cluster: Any, api: Any, user: str, kubeconfig: Path) -> Path:
    """manifests/install applied for real (as docs/install.md says), its ``golora-operator``
    ClusterRole bound to the plain User ``user`` (client-certificate users cannot be
    ServiceAccounts; the rules are the same), and a kubeconfig for that user at ``kubeconfig``."""
    cluster.kubectl("apply", "--server-side", "--field-manager=golora-install", "-k",
                    str(REPO / "manifests" / "install"))
    try:
        kubernetes.client.RbacAuthorizationV1Api(api).create_cluster_role_binding({
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "golora-operator"},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}]})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:  # bound already, by an earlier test of the session
            raise
    return cluster.write_kubeconfig(user, [], kubeconfig)
