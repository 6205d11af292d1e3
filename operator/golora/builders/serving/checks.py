"""Everything that must hold before golora adds an adapter to a Deployment; each failure is a
:class:`Problem` with a condition reason."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import vllm
from ...vllm import parse_invocation
from .args import strip_args
from .record import STORE_MOUNT, STORE_VOLUME, AdapterEntry, read_record

# Why a target cannot be patched (condition reasons).
CONTAINER_NOT_FOUND = "ContainerNotFound"
UNSUPPORTED_COMMAND = "UnsupportedCommand"
SERVED_MODEL_UNKNOWN = "ServedModelUnknown"
BASE_MODEL_MISMATCH = "BaseModelMismatch"
DUPLICATE_SERVED_NAME = "DuplicateServedName"
STORAGE_CONFLICT = "StorageConflict"


@dataclass(frozen=True)
class Problem:
    reason: str
    message: str


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}


def deployment_name(deployment: dict[str, Any]) -> str:
    return (deployment.get("metadata") or {}).get("name", "?")


def find_container(deployment: dict[str, Any], name: str) -> tuple[dict[str, Any] | None, Problem | None]:
    """The container named ``name`` (never another one: an llm-d decode pod also runs a
    ``routing-proxy``)."""
    pod = pod_spec(deployment)
    for ctr in pod.get("containers") or []:
        if ctr.get("name") == name:
            return ctr, None
    names = [ctr.get("name") for ctr in pod.get("containers") or []]
    inits = [ctr.get("name") for ctr in pod.get("initContainers") or []]
    extra = f"; init containers: {', '.join(inits)}" if inits else ""
    where = "is an init container, not the engine" if name in inits else "does not exist"
    return None, Problem(CONTAINER_NOT_FOUND,
                         f"Deployment {deployment_name(deployment)}: container {name!r} {where} "
                         f"(containers: {', '.join(n or '?' for n in names) or 'none'}{extra}); set spec.containerName")


def check_target(deployment: dict[str, Any], entry: AdapterEntry, live_owners: set[str] | None = None) -> list[Problem]:
    """Everything that must hold before ``entry`` may be added to ``deployment``.

    ``live_owners``: AdapterServings that still exist (entries of others are stale).
    """
    dname = deployment_name(deployment)
    container, problem = find_container(deployment, entry.container)
    if problem:
        return [problem]
    assert container is not None
    inv = parse_invocation(container.get("command"), container.get("args"))
    problems: list[Problem] = []
    if not inv.patchable:
        what = "a shell script (sh -c)" if inv.kind == "shell" else f"{' '.join(inv.command)!r}"
        problems.append(Problem(UNSUPPORTED_COMMAND,
                                f"Deployment {dname}: container {entry.container!r} runs {what}, not `vllm serve` or "
                                f"`python -m vllm.entrypoints.openai.api_server`: golora cannot tell where vLLM's "
                                f"arguments go; write the command and args as lists"))
    served = inv.served_model_names
    if not inv.model:
        hint = " (it may be in a --config file, which golora cannot read)" if inv.last(vllm.FLAG_CONFIG) else ""
        problems.append(Problem(SERVED_MODEL_UNKNOWN,
                                f"Deployment {dname}: no model found in container {entry.container!r}'s command line"
                                f"{hint}; golora checks the adapter's base model against it"))
    elif entry.base_model:
        candidates = [inv.model, *served]
        if not any(vllm.same_family(entry.base_model, cand) for cand in candidates):
            problems.append(Problem(BASE_MODEL_MISMATCH,
                                    f"adapter base model {entry.base_model!r} does not match Deployment {dname}'s "
                                    f"model {inv.model!r} (family {vllm.model_family(entry.base_model)!r} vs "
                                    f"{vllm.model_family(inv.model)!r}); the adapter would not load or would be wrong"))
    if entry.name in served or entry.name == inv.model:
        problems.append(Problem(DUPLICATE_SERVED_NAME,
                                f"servedName {entry.name!r} is the base model's own name on Deployment {dname}"))
    record = read_record(deployment)
    user_args = strip_args(container.get("command"), container.get("args"), record.containers.get(entry.container))
    user_inv = parse_invocation(container.get("command"), user_args)
    for mod in user_inv.lora_modules:
        if mod.name == entry.name:
            problems.append(Problem(DUPLICATE_SERVED_NAME,
                                    f"servedName {entry.name!r} is already served on Deployment {dname} by its own "
                                    f"--lora-modules ({mod.raw})"))
    for other in record.adapters:
        if other.owner == entry.owner or (live_owners is not None and other.owner not in live_owners):
            continue
        if other.name == entry.name:
            problems.append(Problem(DUPLICATE_SERVED_NAME,
                                    f"servedName {entry.name!r} on Deployment {dname} is already claimed by "
                                    f"AdapterServing {other.owner!r}"))
        elif other.claim != entry.claim:
            problems.append(Problem(STORAGE_CONFLICT,
                                    f"Deployment {dname} already mounts store claim {other.claim!r} at {STORE_MOUNT} "
                                    f"for AdapterServing {other.owner!r}; this one uses {entry.claim!r} "
                                    f"(one store per Deployment)"))
    pod = pod_spec(deployment)
    for vol in pod.get("volumes") or []:
        if vol.get("name") == STORE_VOLUME and not record.adapters:
            claim = (vol.get("persistentVolumeClaim") or {}).get("claimName")
            if claim != entry.claim:
                problems.append(Problem(STORAGE_CONFLICT,
                                        f"Deployment {dname} already has a volume named {STORE_VOLUME!r} "
                                        f"(not golora's, claim {claim!r})"))
    for mount in container.get("volumeMounts") or []:
        if mount.get("mountPath") == STORE_MOUNT and mount.get("name") != STORE_VOLUME:
            problems.append(Problem(STORAGE_CONFLICT,
                                    f"Deployment {dname}: container {entry.container!r} already mounts "
                                    f"{mount.get('name')!r} at {STORE_MOUNT}"))
    return problems
