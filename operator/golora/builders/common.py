"""Pieces every worker Job shares: owner reference, labels, store volume, security."""

from __future__ import annotations

import json
import re
from typing import Any

from .. import naming
from ..api import API_VERSION
from ..api.worker import CONFIG_ENV
from ..settings import Settings

WORKER_STORE_MOUNT = "/store"  # where worker Jobs mount the store (vLLM pods: builders.serving.STORE_MOUNT)
SCRATCH_MOUNT = "/tmp"
CLAIMS_MOUNT = "/mnt/claims"
SECRETS_MOUNT = "/var/run/golora/secrets"


def owner_reference(kind: str, name: str, uid: str) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def volume_name(prefix: str, name: str) -> str:
    """A valid volume name (DNS label) for a claim or secret name."""
    return (prefix + "-" + re.sub(r"[^a-z0-9-]", "-", name.lower()))[:63].rstrip("-")


def claim_volume(claim: str, read_only: bool = False) -> dict[str, Any]:
    return {"name": volume_name("claim", claim),
            "persistentVolumeClaim": {"claimName": claim, "readOnly": read_only}}


def secret_volume(secret: str, key: str, file_name: str) -> dict[str, Any]:
    return {"name": volume_name("secret", secret),
            "secret": {"secretName": secret, "items": [{"key": key, "path": file_name}], "defaultMode": 0o440}}


def container_security() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def store_worker(*, name: str, subcommand: str, config: dict[str, Any], claim: str, mount_path: str,
                 read_only: bool, resources: dict[str, Any], settings: Settings
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The container and volumes of a small worker Job (no GPU): ``python -m golora_trainer
    <subcommand>`` with its config in the environment and one store claim mounted."""
    mount: dict[str, Any] = {"name": volume_name("claim", claim), "mountPath": mount_path}
    if read_only:
        mount["readOnly"] = True
    container = {
        "name": name,
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "golora_trainer", subcommand],
        "env": [{"name": CONFIG_ENV, "value": json.dumps(config, sort_keys=True, separators=(",", ":"))},
                {"name": "HOME", "value": SCRATCH_MOUNT}],
        "volumeMounts": [mount, {"name": "scratch", "mountPath": SCRATCH_MOUNT}],
        "resources": resources,
        "securityContext": container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    return container, [claim_volume(claim, read_only=read_only), {"name": "scratch", "emptyDir": {}}]


def job(
    *,
    name: str,
    namespace: str,
    kind: str,
    owner_name: str,
    owner_uid: str,
    generation: int,
    attempt: int,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    pod_extra: dict[str, Any] | None = None,
    deadline_seconds: int | None = None,
) -> dict[str, Any]:
    """A Job that runs one worker container once (retries are the operator's decision,
    recorded in status, so ``backoffLimit`` is 0)."""
    labels = naming.owner_labels(kind, owner_name, generation, attempt)
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "metadata": {"labels": labels},
            "spec": {
                "restartPolicy": "Never",
                "serviceAccountName": naming.WORKER_SERVICE_ACCOUNT,
                "automountServiceAccountToken": True,
                "securityContext": {"fsGroup": 65532},
                "containers": [container],
                "volumes": volumes,
                **(pod_extra or {}),
            },
        },
    }
    if deadline_seconds:
        spec["activeDeadlineSeconds"] = deadline_seconds
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [owner_reference(kind, owner_name, owner_uid)],
        },
        "spec": spec,
    }
