"""AdapterServing with an explicit ``adapterPath`` -> a small Job that validates the files
on the store (the operator cannot read a namespace's PVC) with the same validator the
trainer uses, and reports through the AdapterServing's status subresource."""

from __future__ import annotations

from typing import Any

from ..api import GROUP, VERSION
from ..api.adapterserving import KIND
from ..naming import job_name
from ..settings import Settings
from .common import WORKER_STORE_MOUNT, job, store_worker

JOB_KIND_SHORT = "asv"


def check_config(namespace: str, name: str, generation: int, path: str, claim: str) -> dict[str, Any]:
    return {
        "storeRoot": WORKER_STORE_MOUNT,
        "adapterPath": path,
        "claim": claim,
        "generation": generation,
        "statusTarget": {"group": GROUP, "version": VERSION, "plural": KIND.plural,
                         "namespace": namespace, "name": name},
    }


def build_adapter_check_job(*, namespace: str, name: str, uid: str, generation: int, path: str, claim: str,
                            settings: Settings) -> dict[str, Any]:
    """Runs ``python -m golora_trainer validate-adapter`` (the trainer image has golora's
    validator) with the store mounted read-only; no GPU, a few seconds."""
    container, volumes = store_worker(
        name="validate", subcommand="validate-adapter", config=check_config(namespace, name, generation, path, claim),
        claim=claim, mount_path=WORKER_STORE_MOUNT, read_only=True,
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}}, settings=settings)
    return job(
        name=job_name(JOB_KIND_SHORT, name, generation), namespace=namespace, kind=KIND.kind,
        owner_name=name, owner_uid=uid, generation=generation, attempt=1, container=container,
        volumes=volumes,
        deadline_seconds=600,
    )

