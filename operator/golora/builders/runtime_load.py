"""Runtime loading (``spec.loading: Runtime``), the pod side, as pure functions: what to do on
each ready pod, the resolver-directory Job, and the status and conditions from what the pods
answered. The handler (``golora.handlers.runtime``) does the HTTP calls and the writes.

What vLLM loads from is a snapshot golora prepared on the store, per Deployment and version:
``lora-resolver/<ns>/<deployment>/.versions/<served>-<version>/`` holds the trained
``adapter_config.json`` with ``base_model_name_or_path`` set to that Deployment's ``--model``
(vLLM's filesystem resolver accepts nothing else) and a hard link (or copy) of the weights, so
the trained adapter is never edited and a retrained one does not change a loaded snapshot.
``lora-resolver/<ns>/<deployment>/<served>`` is a symlink to the newest snapshot: the entry the
resolver reads when a request names an adapter a fresh pod has not loaded yet. The path in a
pod's ``GET /v1/models`` card (``root``) says which version that pod has.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .. import conditions as c
from .. import naming
from ..api.adapterserving import KIND
from ..api.worker import CONFIG_ENV
from ..settings import Settings
from ..vllm import parse_invocation
from . import common
from . import runtime as rt
from .serving import STORE_MOUNT

JOB_KIND_SHORT = "asr"
REMOVED_JOB_TTL = 300  # a removal Job has no owner left to be collected with

NOTHING = "none"
LOAD = "load"
INPLACE = "inplace"

# Serving reasons in Runtime mode.
LOADED = "Loaded"
LOAD_REFUSED = "RuntimeLoadRefused"
PREPARING = "PreparingDeployment"
PREPARING_RESOLVER = "PreparingResolverDirectory"


@dataclass(frozen=True)
class Want:
    """One AdapterServing's adapter as it should be loaded on one Deployment's pods."""

    deployment: str
    served: str
    version: str
    snapshot: str  # store-relative version directory
    base_model: str  # the Deployment's --model: what the snapshot's config names

    @property
    def load_path(self) -> str:
        """Where vLLM reads it, inside the engine container."""
        return f"{STORE_MOUNT}/{self.snapshot}"


def want_for(namespace: str, deployment: dict[str, Any], container: str, served: str, version: str) -> Want | None:
    """The snapshot for ``deployment`` (None when its engine has no readable model)."""
    engine = next((x for x in ((deployment.get("spec") or {}).get("template") or {}).get("spec", {})
                   .get("containers") or [] if x.get("name") == container), None)
    if engine is None:
        return None
    model = parse_invocation(engine.get("command"), engine.get("args")).model
    if not model:
        return None
    dname = deployment["metadata"]["name"]
    return Want(dname, served, version, rt.version_dir(namespace, dname, served, version), model)


def pod_action(cards: dict[str, dict[str, Any]], want: Want) -> str:
    """``load`` (not listed), ``inplace`` (listed from another snapshot: an older version, or the
    resolver's entry) or ``none`` (this version is loaded)."""
    card = cards.get(want.served)
    if card is None:
        return LOAD
    return NOTHING if card.get("root") == want.load_path else INPLACE


def refused_before(row: dict[str, Any] | None, want: Want) -> bool:
    """This pod already refused exactly this snapshot: do not ask it again (until the
    adapter, the spec or the pod changes)."""
    err = (row or {}).get("lastError") or {}
    return bool(err) and err.get("path") == want.load_path and err.get("adapter") == want.served


# --- The resolver-directory Job -------------------------------------------------------------------

def resolver_config(adapter_path: str, wants: list[Want], *, remove: bool = False) -> dict[str, Any]:
    """What the Job writes (or removes): per Deployment the snapshot, the resolver entry and
    the base model name its config must carry."""
    return {
        # The store at the path the model servers see it (golora's mount), so a path in the
        # config (baseModel) means the same file in this Job and in the server.
        "storeRoot": STORE_MOUNT,
        "adapterPath": adapter_path,
        "remove": remove,
        "entries": [{"snapshot": w.snapshot, "entry": f"{rt.resolver_dir_of(w.snapshot)}/{w.served}",
                     "served": w.served, "baseModel": w.base_model} for w in wants],
    }


def resolver_job_key(adapter_path: str, wants: list[Want], remove: bool = False, uid: str = "") -> str:
    """Names the Job after what it writes, and after the AdapterServing object (a new object of the
    same name, after a removal Job deleted the snapshots, writes them again)."""
    return rt.version_of(adapter_path, sorted((w.snapshot, w.base_model) for w in wants), remove, uid)


def build_resolver_job(*, namespace: str, name: str, uid: str, generation: int, claim: str, adapter_path: str,
                       wants: list[Want], settings: Settings, remove: bool = False) -> dict[str, Any]:
    """``python -m golora_trainer resolver-entry`` with the store read-write: a few seconds,
    no GPU. A removal Job (the AdapterServing is being deleted) has no owner and a TTL."""
    config = resolver_config(adapter_path, wants, remove=remove)
    key = resolver_job_key(adapter_path, wants, remove, uid)
    container = {
        "name": "resolver",
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "golora_trainer", "resolver-entry"],
        "env": [{"name": CONFIG_ENV, "value": json.dumps(config, sort_keys=True, separators=(",", ":"))},
                {"name": "HOME", "value": "/tmp"}],
        "volumeMounts": [{"name": common.volume_name("claim", claim), "mountPath": STORE_MOUNT},
                         {"name": "scratch", "mountPath": "/tmp"}],
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        "securityContext": common.container_security(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    job = common.job(
        name=naming.job_name(f"{JOB_KIND_SHORT}{'x' if remove else ''}{key[:6]}", name, generation),
        namespace=namespace, kind=KIND.kind, owner_name=name, owner_uid=uid, generation=generation, attempt=1,
        container=container, volumes=[common.claim_volume(claim, read_only=False), {"name": "scratch", "emptyDir": {}}],
        deadline_seconds=300,
    )
    if remove:
        job["metadata"].pop("ownerReferences", None)
        job["spec"]["ttlSecondsAfterFinished"] = REMOVED_JOB_TTL
    return job


# --- Status ----------------------------------------------------------------------------------------

@dataclass
class PodResult:
    """What one ready pod answered."""

    name: str
    uid: str
    ip: str
    listed: list[str] = field(default_factory=list)  # golora adapter names in its /v1/models
    loaded: bool = False  # this AdapterServing's current snapshot is loaded
    path: str | None = None
    loaded_at: str | None = None
    error: dict[str, Any] | None = None  # {adapter, code, message, at, path}
    unreachable: str | None = None  # GET /v1/models failed

    def row(self) -> dict[str, Any]:
        return {"name": self.name, "uid": self.uid, "ip": self.ip, "loaded": sorted(self.listed),
                "loadedAt": self.loaded_at, "path": self.path, "lastError": self.error}


@dataclass
class TargetResult:
    deployment: str
    prepared: bool
    rolled_out: bool
    message: str
    pods: list[PodResult] = field(default_factory=list)


def conditions_for(served: str, results: list[TargetResult]) -> tuple[str, str, list[tuple[str, str, str, str]]]:
    """(phase, message, [RolledOut, Serving]) from what every target's pods answered."""
    names = ", ".join(r.deployment for r in results)
    if not all(r.prepared and r.rolled_out for r in results):
        pending = "; ".join(r.message for r in results if not (r.prepared and r.rolled_out))
        return "RollingOut", f"preparing for runtime loading: {pending}", [
            (c.ROLLED_OUT, c.FALSE, "RollingOut", pending),
            (c.SERVING, c.UNKNOWN, "WaitingForRollout", "adapters are loaded once the pods run the prepared template")]
    rolled = (c.ROLLED_OUT, c.TRUE, "RolledOut", "; ".join(r.message for r in results))
    pods = [(r.deployment, p) for r in results for p in r.pods]
    refused = [(d, p) for d, p in pods if p.error and not p.loaded]
    if refused:
        detail = "; ".join(f"{d}/{p.name}: HTTP {p.error.get('code')}: {p.error.get('message')}" for d, p in refused)
        message = (f"vLLM refused to load {served} at run time ({detail}); the server keeps serving the base model "
                   "and its other adapters")
        return c.FAILED, message, [rolled, (c.SERVING, c.FALSE, LOAD_REFUSED, message)]
    if not pods or any(not r.pods for r in results):
        empty = ", ".join(r.deployment for r in results if not r.pods)
        return "RolledOut", f"no ready pods to load {served} into on {empty}", [
            rolled, (c.SERVING, c.UNKNOWN, "NoReadyPods", f"{empty}: no ready pods")]
    unreachable = [(d, p) for d, p in pods if p.unreachable]
    if unreachable:
        detail = "; ".join(f"{d}/{p.name}: {p.unreachable}" for d, p in unreachable)
        return "RolledOut", f"serving not confirmed: {detail}", [rolled, (c.SERVING, c.UNKNOWN, "ProbeFailed", detail)]
    if all(p.loaded for _, p in pods):
        message = f"{served} is loaded on {len(pods)} pod(s) of {names} (GET /v1/models lists it from golora's snapshot)"
        return "Serving", message, [rolled, (c.SERVING, c.TRUE, LOADED, message)]
    missing = ", ".join(f"{d}/{p.name}" for d, p in pods if not p.loaded)
    return "RolledOut", f"{served} not loaded yet on {missing}", [
        rolled, (c.SERVING, c.FALSE, "NotLoaded", f"not listed on {missing}")]


def deployment_of_pod(pod: dict[str, Any]) -> str | None:
    """The Deployment a pod belongs to, through its ReplicaSet's name (``<deployment>-<pod-template-hash>``)."""
    meta = pod.get("metadata") or {}
    tmpl_hash = (meta.get("labels") or {}).get("pod-template-hash")
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "ReplicaSet" and tmpl_hash and str(ref.get("name", "")).endswith("-" + tmpl_hash):
            return str(ref["name"])[: -len(tmpl_hash) - 1]
    return None


def pod_is_ready(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return (not (pod.get("metadata") or {}).get("deletionTimestamp") and bool(status.get("podIP"))
            and c.is_true(status.get("conditions"), "Ready"))
