"""Runtime loading (``spec.loading: Runtime``), the pod side, as pure functions: what to do on
each ready pod and what its answers mean, the resolver-directory Job, and what deleting an
AdapterServing removes. The handler (``golora.handlers.runtime``) does the HTTP calls and the
writes; the status from all of it is :mod:`golora.builders.runtime_status`.

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

from dataclasses import dataclass, field, replace
from typing import Any

from .. import naming, vllm
from ..api.adapterserving import KIND
from ..settings import Settings
from ..vllm import parse_invocation
from . import common, runtime
from .serving import STORE_MOUNT, AdapterEntry, find_container, read_record

JOB_KIND_SHORT = "asr"
REMOVED_JOB_TTL = 300  # a removal Job has no owner left to be collected with

NOTHING = "none"
LOAD = "load"
INPLACE = "inplace"

# The version a removal Job's wants carry (it removes every version's snapshot).
ANY_VERSION = "x"


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
    engine, _ = find_container(deployment, container)
    if engine is None:
        return None
    model = parse_invocation(engine.get("command"), engine.get("args")).model
    if not model:
        return None
    dname = deployment["metadata"]["name"]
    return Want(dname, served, version, runtime.version_dir(namespace, dname, served, version), model)


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
        "entries": [{"snapshot": w.snapshot, "entry": f"{runtime.resolver_dir_of(w.snapshot)}/{w.served}",
                     "served": w.served, "baseModel": w.base_model} for w in wants],
    }


def resolver_job_key(adapter_path: str, wants: list[Want], remove: bool = False, uid: str = "") -> str:
    """Names the Job after what it writes, and after the AdapterServing object (a new object of the
    same name, after a removal Job deleted the snapshots, writes them again)."""
    return runtime.version_of(adapter_path, sorted((w.snapshot, w.base_model) for w in wants), remove, uid)


def build_resolver_job(*, namespace: str, name: str, uid: str, generation: int, claim: str, adapter_path: str,
                       wants: list[Want], settings: Settings, remove: bool = False) -> dict[str, Any]:
    """``python -m golora_trainer resolver-entry`` with the store read-write: a few seconds,
    no GPU. A removal Job (the AdapterServing is being deleted) has no owner and a TTL."""
    config = resolver_config(adapter_path, wants, remove=remove)
    key = resolver_job_key(adapter_path, wants, remove, uid)
    container, volumes = common.store_worker(
        name="resolver", subcommand="resolver-entry", config=config, claim=claim, mount_path=STORE_MOUNT,
        read_only=False, resources={"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
        settings=settings)
    job = common.job(
        name=naming.job_name(f"{JOB_KIND_SHORT}{'x' if remove else ''}{key[:6]}", name, generation),
        namespace=namespace, kind=KIND.kind, owner_name=name, owner_uid=uid, generation=generation, attempt=1,
        container=container, volumes=volumes,
        deadline_seconds=300,
    )
    if remove:
        job["metadata"].pop("ownerReferences", None)
        job["spec"]["ttlSecondsAfterFinished"] = REMOVED_JOB_TTL
    return job


# --- One pod ----------------------------------------------------------------------------------------

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


def pod_result(pod: dict[str, Any]) -> PodResult:
    meta = pod["metadata"]
    return PodResult(meta["name"], meta.get("uid", ""), pod["status"]["podIP"])


def old_pod_rows(status: dict[str, Any], deployment: str) -> dict[str, dict[str, Any]]:
    """The pods' rows the last reconcile wrote for ``deployment``, by pod uid."""
    old_targets = {t.get("name"): t for t in status.get("targets") or []}
    return {p.get("uid"): p for p in (old_targets.get(deployment) or {}).get("pods") or []}


def unreachable(res: PodResult, url: str, code: int, message: str) -> PodResult:
    """``GET /v1/models`` got no listing: nothing is loaded on this pod this time."""
    return replace(res, unreachable=f"GET {url}{vllm.MODELS_PATH}: {code or 'no answer'} {message}"[:500])


def settle(res: PodResult, cards: dict[str, dict[str, Any]], want: Want, old: dict[str, Any] | None,
           now: str) -> tuple[PodResult, str | None]:
    """What the pod's listing already settles: this snapshot is loaded (keeping when it was), or
    the pod refused it before (not asked again). Else ``res`` as it is and the load to ask for
    (``load`` or ``inplace``)."""
    action = pod_action(cards, want)
    if action == NOTHING:
        since = (old or {}).get("loadedAt") if (old or {}).get("path") == want.load_path else None
        return replace(res, loaded=True, path=want.load_path, loaded_at=since or now), None
    if refused_before(old, want):
        return replace(res, error=old.get("lastError") if old else None), None
    return res, action


def retry_in_place(action: str, ok: bool, message: str) -> bool:
    """A plain load found the name loaded already (the resolver loaded it meanwhile, because
    a request named it): replace it with the snapshot."""
    return not ok and action == LOAD and vllm.ALREADY_LOADED in message


def load_answered(res: PodResult, want: Want, ok: bool, code: int, message: str, now: str) -> PodResult:
    """The pod's answer to the load: loaded, or the error vLLM gave (kept, so it is not asked again)."""
    if ok:
        return replace(res, loaded=True, path=want.load_path, loaded_at=now)
    return replace(res, error={"adapter": want.served, "code": code, "message": message[:2000], "at": now,
                               "path": want.load_path})


def with_listed(res: PodResult, cards: dict[str, dict[str, Any]], golora_names: set[str], want: Want) -> PodResult:
    """The golora adapters the pod lists now (``want`` included once loaded)."""
    names = set(cards) | ({want.served} if res.loaded else set())
    return replace(res, listed=sorted(n for n in names if n in golora_names | {want.served}))


# --- Deleting an AdapterServing ---------------------------------------------------------------------

def runtime_placements(deployments: list[dict[str, Any]], owner: str
                       ) -> list[tuple[dict[str, Any], AdapterEntry, dict[str, Any]]]:
    """(Deployment, ``owner``'s runtime entry on it, its engine container): where it is loaded."""
    out = []
    for dep in deployments:
        entry = next((a for a in read_record(dep).adapters if a.owner == owner and a.runtime), None)
        if entry is None:
            continue
        container, _ = find_container(dep, entry.container)
        if container is not None:
            out.append((dep, entry, container))
    return out


def removal(namespace: str, placements: list[tuple[dict[str, Any], AdapterEntry, dict[str, Any]]]
            ) -> tuple[list[Want], str | None, str | None]:
    """What the removal Job removes: every placement's resolver entry, and the adapter's path
    and claim (None: nothing to remove)."""
    wants, path, claim = [], None, None
    for dep, entry, _ in placements:
        want = want_for(namespace, dep, entry.container, entry.name, ANY_VERSION)
        if want is not None:
            wants.append(want)
        path, claim = entry.path, entry.claim
    return wants, path, claim


def unload_failed(ok: bool, message: str) -> bool:
    """An unload worth a warning (not loaded there is what was wanted)."""
    return not ok and vllm.NOT_FOUND not in message


def deployment_of_pod(pod: dict[str, Any]) -> str | None:
    """The Deployment a pod belongs to, through its ReplicaSet's name (``<deployment>-<pod-template-hash>``)."""
    meta = pod.get("metadata") or {}
    tmpl_hash = (meta.get("labels") or {}).get("pod-template-hash")
    for ref in meta.get("ownerReferences") or []:
        if ref.get("kind") == "ReplicaSet" and tmpl_hash and str(ref.get("name", "")).endswith("-" + tmpl_hash):
            return str(ref["name"])[: -len(tmpl_hash) - 1]
    return None
