"""LoraTraining -> the training Job, the trainer's JSON config, and the decisions around
it (expected precision from node labels, the next attempt after a failure)."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

from ..api import GROUP, VERSION
from ..api.loratraining import (
    KIND,
    REASON_INTERRUPTED,
    REASON_OUT_OF_MEMORY,
    RETRYABLE_REASONS,
    TRAINER_CONFIG_ENV,
    LoraTrainingSpec,
    reason_for_exit_code,
)
from ..naming import job_name
from ..settings import Settings
from .common import (
    SCRATCH_MOUNT,
    SECRETS_MOUNT,
    STORE_MOUNT,
    claim_volume,
    container_security,
    job,
    volume_name,
)
from .dataset import dataset_path
from .status import Termination

JOB_KIND_SHORT = "lt"
CONTAINER_NAME = "train"
# Exit codes of a process killed by SIGKILL / SIGTERM (128 + signal), as container runtimes report them.
SIGNAL_EXIT_CODES = (137, 143)
LABEL_GPU_PRODUCT = "nvidia.com/gpu.product"  # GPU feature discovery
LABEL_GPU_COMPUTE_MAJOR = "nvidia.com/gpu.compute.major"
GPU_RESOURCE = "nvidia.com/gpu"
HF_TOKEN_FILE = posixpath.join(SECRETS_MOUNT, "hf", "token")


def adapter_path(namespace: str, name: str) -> str:
    """Store-relative adapter directory (DESIGN.md store layout)."""
    return f"adapters/{namespace}/{name}"


def node_selector(spec: LoraTrainingSpec) -> dict[str, str]:
    selector = dict(spec.placement.node_selector)
    if spec.placement.gpu_product:
        selector[LABEL_GPU_PRODUCT] = spec.placement.gpu_product
    return selector


def expected_precision(spec: LoraTrainingSpec, node_labels: list[dict[str, str]]) -> str:
    """What ``precision: auto`` will resolve to on the nodes the Job can land on, shown in
    status before the Job starts (a T4 is 7.5: the fp16 recipe, never bf16)."""
    if spec.training.precision != "auto":
        return spec.training.precision
    if spec.placement.gpus == 0:
        return "fp32"
    majors = {labels.get(LABEL_GPU_COMPUTE_MAJOR) for labels in node_labels} - {None}
    if not majors:
        return "unknown"
    lowest = min(int(m) for m in majors if m.isdigit()) if any(m.isdigit() for m in majors) else None
    if lowest is None:
        return "unknown"
    return "bf16" if lowest >= 8 else "fp16"


@dataclass(frozen=True)
class DatasetFiles:
    train_path: str
    eval_path: str | None


def dataset_files(namespace: str, spec: LoraTrainingSpec, dataset_status: dict[str, Any] | None) -> DatasetFiles:
    """Where the training data is on the store: the GoDataset's files, or dataPath."""
    if spec.data_path:
        return DatasetFiles(spec.data_path, None)
    assert spec.dataset_ref is not None
    result = (dataset_status or {}).get("result") or {}
    base = dataset_path(namespace, spec.dataset_ref.name)
    train = result.get("trainPath") or f"{base}/train.jsonl"
    evalp = result.get("evalPath") or f"{base}/eval.jsonl"
    return DatasetFiles(train, evalp if result.get("pairsEval", 1) else None)


def trainer_config(namespace: str, name: str, spec: LoraTrainingSpec, files: DatasetFiles,
                   attempt: int, micro_batch_size: int | None) -> dict[str, Any]:
    """The TrainerConfig document (validated by the trainer with the same models)."""
    config: dict[str, Any] = {
        "spec": spec.model_dump(by_alias=True, exclude_none=True),
        "storeRoot": STORE_MOUNT,
        "trainPath": files.train_path,
        "outputPath": adapter_path(namespace, name),
        "attempt": attempt,
        "statusTarget": {"group": GROUP, "version": VERSION, "plural": KIND.plural,
                         "namespace": namespace, "name": name},
    }
    if files.eval_path:
        config["evalPath"] = files.eval_path
    if spec.base_model.path:
        config["modelPath"] = posixpath.join(STORE_MOUNT, spec.base_model.path)
    if micro_batch_size:
        config["microBatchSize"] = micro_batch_size
    if spec.base_model.token_secret:
        config["hfTokenFile"] = HF_TOKEN_FILE
    return config


def build_training_job(*, namespace: str, name: str, uid: str, generation: int, attempt: int,
                       spec: LoraTrainingSpec, files: DatasetFiles, micro_batch_size: int | None,
                       settings: Settings) -> dict[str, Any]:
    """The training Job for one attempt: pinned to the GPU node by product label or node
    selector, ``nvidia.com/gpu`` limit, store mounted, config as one JSON env value."""
    config = trainer_config(namespace, name, spec, files, attempt, micro_batch_size)
    store = spec.storage.claim_name
    volumes: list[dict[str, Any]] = [claim_volume(store), {"name": "scratch", "emptyDir": {}},
                                     {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}}]
    mounts: list[dict[str, Any]] = [
        {"name": volume_name("claim", store), "mountPath": STORE_MOUNT},
        {"name": "scratch", "mountPath": SCRATCH_MOUNT},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    if spec.base_model.token_secret:
        ref = spec.base_model.token_secret
        volumes.append({"name": "hf-token", "secret": {"secretName": ref.name,
                                                       "items": [{"key": ref.key, "path": "token"}],
                                                       "defaultMode": 0o440}})
        mounts.append({"name": "hf-token", "mountPath": posixpath.dirname(HF_TOKEN_FILE), "readOnly": True})
    resources: dict[str, Any] = (spec.placement.resources.model_dump(by_alias=True)
                                 if spec.placement.resources else {"requests": {"cpu": "2", "memory": "16Gi"}})
    if spec.placement.gpus:
        resources.setdefault("limits", {})[GPU_RESOURCE] = str(spec.placement.gpus)
    container = {
        "name": CONTAINER_NAME,
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "golora_trainer", "run"],
        "env": [
            {"name": TRAINER_CONFIG_ENV, "value": json.dumps(config, sort_keys=True, separators=(",", ":"))},
            {"name": "HOME", "value": SCRATCH_MOUNT},
            # Model downloads are cached on the store, so a retry does not fetch 15 GB again.
            {"name": "HF_HOME", "value": posixpath.join(STORE_MOUNT, ".cache", "huggingface")},
            {"name": "GOLORA_TERMINATION_LOG", "value": "/dev/termination-log"},
        ],
        "volumeMounts": mounts,
        "resources": resources,
        "securityContext": container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_extra: dict[str, Any] = {}
    if selector := node_selector(spec):
        pod_extra["nodeSelector"] = selector
    if spec.placement.tolerations:
        pod_extra["tolerations"] = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.placement.tolerations]
    return job(
        name=job_name(JOB_KIND_SHORT, name, generation, attempt),
        namespace=namespace, kind=KIND.kind, owner_name=name, owner_uid=uid,
        generation=generation, attempt=attempt, container=container, volumes=volumes, pod_extra=pod_extra,
    )


@dataclass(frozen=True)
class Retry:
    attempt: int
    micro_batch_size: int | None


def next_attempt(spec: LoraTrainingSpec, attempt: int, reason: str, last_micro_batch: int | None) -> Retry | None:
    """Whether a failed attempt is retried, and how: an OutOfMemory attempt again with half
    the micro-batch (never below 1; a micro-batch of 1 that OOMs is final); an interrupted
    one as it was (it resumes from its checkpoint). Bounded by ``retry.maxAttempts``."""
    if reason not in RETRYABLE_REASONS or attempt >= spec.retry.max_attempts:
        return None
    if reason == REASON_OUT_OF_MEMORY:
        if not last_micro_batch or last_micro_batch <= 1:
            return None
        return Retry(attempt + 1, max(1, last_micro_batch // 2))
    return Retry(attempt + 1, last_micro_batch)


def reason_from_termination(term: Termination | None) -> str | None:
    """The failure reason a training container's end stands for, from the Pod's status.

    ``OOMKilled`` (the kernel killed it at its memory limit): ``OutOfMemory``, retried with
    half the micro-batch. Killed by a signal (node lost, preemption, eviction, SIGKILL):
    ``Interrupted``, the next attempt resumes from the last checkpoint. Otherwise the
    trainer's own exit code (``api.loratraining``), or None if it is not one of them."""
    if term is None:
        return None
    if term.reason == "OOMKilled":
        return REASON_OUT_OF_MEMORY
    if term.signal or term.exit_code in SIGNAL_EXIT_CODES:
        return REASON_INTERRUPTED
    return reason_for_exit_code(term.exit_code)
