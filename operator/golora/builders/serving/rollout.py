"""How a patched Deployment is doing: rolled out, its engine crashing, a surge that cannot
finish on a one-GPU node, and the port vLLM listens on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import vllm
from ...vllm import parse_invocation
from .checks import deployment_name, find_container, pod_spec


@dataclass(frozen=True)
class Rollout:
    generation: int | None
    observed_generation: int | None
    replicas: int
    updated_replicas: int
    available_replicas: int
    ready_replicas: int
    done: bool
    message: str


def rollout_state(deployment: dict[str, Any]) -> Rollout:
    """Like ``kubectl rollout status``: the controller saw this generation, every replica is
    updated, no old replica is left, and the updated ones are available."""
    meta, spec, status = deployment.get("metadata") or {}, deployment.get("spec") or {}, deployment.get("status") or {}
    gen, obs = meta.get("generation"), status.get("observedGeneration")
    want = spec.get("replicas", 1)
    total, updated = status.get("replicas") or 0, status.get("updatedReplicas") or 0
    available, ready = status.get("availableReplicas") or 0, status.get("readyReplicas") or 0
    name = meta.get("name", "?")
    if gen is not None and (obs is None or obs < gen):
        done, msg = False, f"{name}: waiting for the Deployment controller to observe generation {gen}"
    elif updated < want:
        done, msg = False, f"{name}: {updated} of {want} replicas updated"
    elif total > updated:
        done, msg = False, f"{name}: {total - updated} old replicas pending termination"
    elif available < updated:
        done, msg = False, f"{name}: {available} of {updated} updated replicas available"
    else:
        done, msg = True, f"{name}: rolled out ({available}/{want} available)"
    return Rollout(gen, obs, want, updated, available, ready, done, msg)


@dataclass(frozen=True)
class EngineCrash:
    """The engine container of a pod from the Deployment's current template exited with an error."""

    pod: str
    exit_code: int | None
    reason: str
    message: str


def engine_crash(deployment: dict[str, Any], pods: list[dict[str, Any]], container: str) -> EngineCrash | None:
    """A pod running the Deployment's *current* engine command line (same args) whose engine
    container failed: exited non-zero (``lastState`` or ``state.terminated``) or is in
    ``CrashLoopBackOff``. That is vLLM refusing to start, e.g. an adapter it cannot load
    (``init_static_loras``): in Restart mode such an adapter takes the whole server down."""
    engine, _ = find_container(deployment, container)
    if engine is None:
        return None
    for pod in pods:
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue  # stopped on purpose (deleted, drained): its exit code says nothing about the adapter
        spec_engine = next((x for x in (pod.get("spec") or {}).get("containers") or [] if x.get("name") == container), None)
        if spec_engine is None or spec_engine.get("args") != engine.get("args") or \
                spec_engine.get("command") != engine.get("command"):
            continue  # a pod of an older template
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if cs.get("name") != container:
                continue
            state, last = cs.get("state") or {}, cs.get("lastState") or {}
            term = state.get("terminated") or last.get("terminated")
            waiting = state.get("waiting") or {}
            if (term and term.get("exitCode", 0) != 0) or waiting.get("reason") == "CrashLoopBackOff":
                term = term or {}
                return EngineCrash(pod["metadata"]["name"], term.get("exitCode"), term.get("reason") or
                                   waiting.get("reason") or "Error", (term.get("message") or "").strip())
    return None


def _requests_gpu(pod: dict[str, Any]) -> str | None:
    for ctr in (pod.get("containers") or []) + (pod.get("initContainers") or []):
        res = ctr.get("resources") or {}
        for section in ("limits", "requests"):
            for key in (res.get(section) or {}):
                if key.endswith("/gpu") or key.endswith(".com/gpu") or "gpu" in key.split("/")[-1]:
                    return key
    return None


def surge_risk(deployment: dict[str, Any]) -> str | None:
    """A warning when a GPU Deployment rolls out with surge: the new pod needs a GPU the old
    one still holds, so on a one-GPU node it stays Pending and the rollout never finishes."""
    spec = deployment.get("spec") or {}
    strategy = spec.get("strategy") or {}
    if strategy.get("type") == "Recreate":
        return None
    surge = (strategy.get("rollingUpdate") or {}).get("maxSurge", "25%")
    if str(surge).strip() in ("0", "0%"):
        return None
    gpu = _requests_gpu(pod_spec(deployment))
    if not gpu:
        return None
    return (f"Deployment {deployment_name(deployment)} requests {gpu} and rolls out with maxSurge {surge}: on a node with one "
            f"GPU the new pod stays Pending and the rollout never finishes; set strategy.type Recreate or "
            f"rollingUpdate.maxSurge 0")


def container_port(container: dict[str, Any]) -> int:
    """Where vLLM listens: its --port, else the container's first port, else 8000."""
    inv = parse_invocation(container.get("command"), container.get("args"))
    if inv.port:
        return inv.port
    for port in container.get("ports") or []:
        if port.get("containerPort"):
            return int(port["containerPort"])
    return vllm.DEFAULT_PORT

