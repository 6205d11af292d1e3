"""LoraTraining -> the training Job, the trainer's JSON config, and the decisions around
it (expected precision from node labels, the next attempt after a failure)."""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

from .. import naming
from ..api import GROUP, VERSION
from ..api.loratraining import KIND, LoraTrainingSpec
from ..api.worker import (
    CONFIG_ENV,
    POD_IP_ENV,
    REASON_INTERRUPTED,
    REASON_OUT_OF_MEMORY,
    RETRYABLE_REASONS,
    TERMINATION_LOG,
    TERMINATION_LOG_ENV,
    reason_for_exit_code,
)
from ..naming import job_name
from ..settings import Settings
from .common import (
    SCRATCH_MOUNT,
    SECRETS_MOUNT,
    WORKER_STORE_MOUNT,
    claim_volume,
    container_security,
    job,
    owner_reference,
    secret_volume,
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
# torchrun's c10d rendezvous (several nodes): the store is hosted by the index-0 pod.
RDZV_PORT = 29400
HOSTNAME_MAX = 63


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
        "storeRoot": WORKER_STORE_MOUNT,
        "trainPath": files.train_path,
        "outputPath": adapter_path(namespace, name),
        "attempt": attempt,
        "statusTarget": {"group": GROUP, "version": VERSION, "plural": KIND.plural,
                         "namespace": namespace, "name": name},
    }
    if files.eval_path:
        config["evalPath"] = files.eval_path
    if spec.base_model.path:
        config["modelPath"] = posixpath.join(WORKER_STORE_MOUNT, spec.base_model.path)
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
        {"name": volume_name("claim", store), "mountPath": WORKER_STORE_MOUNT},
        {"name": "scratch", "mountPath": SCRATCH_MOUNT},
        {"name": "shm", "mountPath": "/dev/shm"},
    ]
    if spec.base_model.token_secret:
        ref = spec.base_model.token_secret
        volumes.append(secret_volume(ref.name, ref.key, posixpath.basename(HF_TOKEN_FILE)) | {"name": "hf-token"})
        mounts.append({"name": "hf-token", "mountPath": posixpath.dirname(HF_TOKEN_FILE), "readOnly": True})
    resources: dict[str, Any] = (spec.placement.resources.model_dump(by_alias=True)
                                 if spec.placement.resources else {"requests": {"cpu": "2", "memory": "16Gi"}})
    if spec.placement.gpus:
        resources.setdefault("limits", {})[GPU_RESOURCE] = str(spec.placement.gpus)
    jname = job_name(JOB_KIND_SHORT, name, generation, attempt)
    container = {
        "name": CONTAINER_NAME,
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": trainer_command(spec, jname, rendezvous_service_name(name, generation)),
        "env": [
            {"name": CONFIG_ENV, "value": json.dumps(config, sort_keys=True, separators=(",", ":"))},
            {"name": "HOME", "value": SCRATCH_MOUNT},
            # Model downloads are cached on the store, so a retry does not fetch 15 GB again.
            {"name": "HF_HOME", "value": posixpath.join(WORKER_STORE_MOUNT, ".cache", "huggingface")},
            {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
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
    nodes = spec.placement.nodes
    if nodes > 1:
        container["env"].append({"name": POD_IP_ENV, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
        pod_extra["subdomain"] = rendezvous_service_name(name, generation)
        # one rank-pod per node: the pods of this attempt repel each other
        pod_extra["affinity"] = {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": naming.owner_labels(KIND.kind, name, generation, attempt)},
            "topologyKey": "kubernetes.io/hostname"}]}}
    body = job(
        name=jname, namespace=namespace, kind=KIND.kind, owner_name=name, owner_uid=uid,
        generation=generation, attempt=attempt, container=container, volumes=volumes, pod_extra=pod_extra,
    )
    if nodes > 1:
        # one pod per node, all at once; backoffLimit 0: one failed rank fails the attempt
        body["spec"].update(completionMode="Indexed", completions=nodes, parallelism=nodes)
    return body


def rendezvous_service_name(name: str, generation: int) -> str:
    """The headless Service of a generation's multi-node Jobs (a DNS-1035 label: starts with a letter)."""
    return "r-" + job_name(JOB_KIND_SHORT, name, generation, 1).removesuffix("-a1")


def rendezvous_host(job: str, service: str) -> str:
    """The index-0 pod as cluster DNS names it: the Job controller sets its hostname to
    ``<job>-0`` and the template's subdomain to the headless Service (search path: the namespace)."""
    return f"{f'{job}-0'[:HOSTNAME_MAX]}.{service}"


def trainer_command(spec: LoraTrainingSpec, job: str, service: str) -> list[str]:
    """One rank: the trainer itself. Several GPUs or nodes: the trainer under torchrun
    (``golora_trainer launch``). Only integers and generated names: nothing from the CR's strings."""
    gpus, nodes = spec.placement.gpus, spec.placement.nodes
    if gpus <= 1 and nodes == 1:
        return ["python", "-m", "golora_trainer", "run"]
    command = ["python", "-m", "golora_trainer", "launch", "--nproc-per-node", str(max(gpus, 1))]
    if nodes > 1:
        command += ["--nnodes", str(nodes), "--rdzv-endpoint", f"{rendezvous_host(job, service)}:{RDZV_PORT}",
                    "--rdzv-id", job, "--join-timeout", str(spec.placement.scheduling_timeout_seconds)]
    return command


def build_rendezvous_service(*, namespace: str, name: str, uid: str, generation: int) -> dict[str, Any]:
    """The headless Service that gives each pod of a multi-node Job its DNS name. Not-ready
    pods are published too: a training pod never becomes Ready before the rendezvous."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": rendezvous_service_name(name, generation), "namespace": namespace,
                     "labels": naming.owner_labels(KIND.kind, name, generation),
                     "ownerReferences": [owner_reference(KIND.kind, name, uid)]},
        "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                 "selector": naming.owner_labels(KIND.kind, name, generation),
                 "ports": [{"name": "c10d", "port": RDZV_PORT, "targetPort": RDZV_PORT, "protocol": "TCP"}]},
    }


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
    trainer's own exit code (``api.worker``), or None if it is not one of them."""
    if term is None:
        return None
    if term.reason == "OOMKilled":
        return REASON_OUT_OF_MEMORY
    if term.signal or term.exit_code in SIGNAL_EXIT_CODES:
        return REASON_INTERRUPTED
    return reason_for_exit_code(term.exit_code)


def attempt_termination(pods: list[dict[str, Any]]) -> Termination | None:
    """How a (possibly multi-pod) attempt's training containers ended, the most telling first:
    a rank's own failure (OutOfMemory, the trainer's codes) before a kill or a rank that only
    lost its peer (both Interrupted). One pod: its container's end."""
    ends: list[tuple[str, Termination]] = []
    for pod in pods:
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            term = (cs.get("state") or {}).get("terminated") or (cs.get("lastState") or {}).get("terminated")
            if cs.get("name") == CONTAINER_NAME and term and int(term.get("exitCode", 0)) != 0:
                ends.append((term.get("finishedAt") or "", Termination(
                    pod["metadata"]["name"], int(term.get("exitCode", 0)), term.get("reason") or "",
                    term.get("signal"), (term.get("message") or "").strip())))
    if not ends:
        return None
    ends.sort(key=lambda e: (reason_from_termination(e[1]) == REASON_INTERRUPTED, e[0]))
    return ends[0][1]


def scheduling_summary(pods: list[dict[str, Any]], nodes: int) -> tuple[bool, str] | None:
    """Whether all pods of a multi-node attempt are placed, and a message that says how many
    are and (if not) what the scheduler said about the first one it could not place. None
    while the scheduler has not looked at every pod yet."""
    placed, waiting = 0, None
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        # a pod that ended (or is going) says nothing about placement any more; and once one
        # has, the scheduler may place a waiting peer on the node it freed
        if pod["metadata"].get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        cond = next((x for x in (pod.get("status") or {}).get("conditions") or [] if x.get("type") == "PodScheduled"),
                    None)
        if cond is None:
            continue
        if cond.get("status") == "True":
            placed += 1
        elif waiting is None:
            waiting = (pod["metadata"]["name"], cond.get("message") or "unschedulable")
    if waiting is not None:
        return False, f"{placed} of {nodes} training pods scheduled; {waiting[0]}: {waiting[1]}"
    if placed >= nodes:
        return True, f"all {nodes} training pods scheduled"
    return None
