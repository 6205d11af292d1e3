"""The ``golora-worker`` identity in a namespace: a ServiceAccount whose only permission
is to patch the status of golora resources there (DESIGN.md: workers own progress/result)."""

from __future__ import annotations

from typing import Any

from .. import naming
from ..api import GROUP, KINDS

ROLE = naming.WORKER_SERVICE_ACCOUNT


def worker_objects(namespace: str) -> list[dict[str, Any]]:
    labels = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": naming.WORKER_SERVICE_ACCOUNT, "namespace": namespace, "labels": labels}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": ROLE, "namespace": namespace, "labels": labels},
         "rules": [{"apiGroups": [GROUP], "resources": [f"{k.plural}/status" for k in KINDS],
                    "verbs": ["get", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": ROLE, "namespace": namespace, "labels": labels},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": naming.WORKER_SERVICE_ACCOUNT, "namespace": namespace}]},
    ]
