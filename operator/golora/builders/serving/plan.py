"""The server-side-apply plan: golora's complete intent for one Deployment.

* The engine container is found **by name**; nothing else in the pod changes (an llm-d decode
  pod's ``routing-proxy`` init container is never touched).
* The store PVC is mounted read-only at :data:`STORE_MOUNT` (volume :data:`STORE_VOLUME`).
  With server-side apply, a field golora stops applying is removed only if no other field
  manager owns it: the volume goes away with the last adapter only if golora added it.
* If the result equals what is there, :func:`plan_deployment` returns no body: no write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ... import naming, vllm
from ...vllm import parse_invocation
from .. import runtime
from .args import desired_args, strip_args
from .checks import Problem, check_target, find_container, pod_spec
from .record import ANNOTATION, STORE_MOUNT, STORE_VOLUME, AdapterEntry, Record, read_record


def _fields_owned(deployment: dict[str, Any], manager: str = naming.FIELD_MANAGER) -> dict[str, Any]:
    """The fieldsV1 set that ``manager`` owns through Apply (merged across entries)."""
    merged: dict[str, Any] = {}

    def merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
        for k, v in src.items():
            if isinstance(v, dict):
                merge(dst.setdefault(k, {}), v)
            else:
                dst[k] = v

    for mf in (deployment.get("metadata") or {}).get("managedFields") or []:
        if mf.get("manager") == manager and mf.get("operation") == "Apply":
            merge(merged, mf.get("fieldsV1") or {})
    return merged


def _keyed(section: dict[str, Any] | None) -> list[tuple[dict[str, Any], Any]]:
    """The ``k:{...}`` entries of a fieldsV1 list-map, their key parsed (unreadable ones skipped)."""
    out = []
    for key, sub in (section or {}).items():
        if key.startswith("k:"):
            try:
                out.append((json.loads(key[2:]), sub))
            except ValueError:
                continue
    return out


@dataclass(frozen=True)
class Owned:
    """Fields of a Deployment that golora owns (from managedFields)."""

    args: frozenset[str] = frozenset()  # container names whose args golora owns
    mounts: frozenset[tuple[str, str]] = frozenset()  # (container, mountPath)
    volumes: frozenset[str] = frozenset()
    annotation: bool = False
    env: frozenset[tuple[str, str]] = frozenset()  # (container, env name)

    def env_of(self, container: str) -> set[str]:
        """Env names of ``container`` that golora owns."""
        return {name for cname, name in self.env if cname == container}


def owned_fields(deployment: dict[str, Any]) -> Owned:
    fields = _fields_owned(deployment)
    pod = ((fields.get("f:spec") or {}).get("f:template") or {}).get("f:spec") or {}
    args, mounts, env = set(), set(), set()
    for key, sub in _keyed(pod.get("f:containers")):
        cname = key.get("name")
        if "f:args" in sub:
            args.add(cname)
        mounts |= {(cname, mkey.get("mountPath")) for mkey, _ in _keyed(sub.get("f:volumeMounts"))}
        env |= {(cname, ekey.get("name")) for ekey, _ in _keyed(sub.get("f:env"))}
    volumes = {vkey.get("name") for vkey, _ in _keyed(pod.get("f:volumes"))}
    annotations = ((fields.get("f:metadata") or {}).get("f:annotations") or {})
    return Owned(frozenset(args), frozenset(mounts), frozenset(volumes), f"f:{ANNOTATION}" in annotations,
                 frozenset(env))


def resolver_cache_dir(namespace: str, deployment: str) -> str:
    """Where a Deployment's engine finds its resolver directory (``VLLM_LORA_RESOLVER_CACHE_DIR``)."""
    return f"{STORE_MOUNT}/{runtime.resolver_dir(namespace, deployment)}"


def store_volume(claim: str) -> dict[str, Any]:
    return {"name": STORE_VOLUME, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}


def store_mount() -> dict[str, Any]:
    return {"name": STORE_VOLUME, "mountPath": STORE_MOUNT, "readOnly": True}


def runtime_gaps(container: dict[str, Any], cache_dir: str) -> list[str]:
    """What an engine container lacks for runtime loading, its command line read (empty: prepared)."""
    inv = parse_invocation(container.get("command"), container.get("args"))
    return runtime.missing_for_runtime(container, cache_dir, lora_enabled=inv.lora_enabled, store_mount=STORE_MOUNT)


def _runtime_part(item: dict[str, Any], container: dict[str, Any], entries: list[AdapterEntry], cache_dir: str,
                  owns_env: bool) -> tuple[dict[str, int] | None, bool]:
    """Runtime loading's part of one container's intent: the env it needs (into ``item``), and
    the scalar floor when it is already prepared. Returns (floor, env changed)."""
    if not any(e.runtime for e in entries):
        return None, owns_env  # golora's runtime env (if any) goes
    env = runtime.container_env(container, cache_dir)
    item["env"] = env
    if runtime_gaps(container, cache_dir):
        return None, runtime.env_differs(container, env)
    current = parse_invocation(container.get("command"), container.get("args"))
    return {vllm.FLAG_MAX_LORA_RANK: current.int_value(vllm.FLAG_MAX_LORA_RANK) or vllm.DEFAULT_MAX_LORA_RANK,
            vllm.FLAG_MAX_LORAS: current.int_value(vllm.FLAG_MAX_LORAS) or vllm.DEFAULT_MAX_LORAS}, False


@dataclass
class Plan:
    """What golora wants on one Deployment.

    ``body``: the server-side-apply body (golora's complete intent for this Deployment), or
    None when the Deployment already matches it (no write). ``args``: the resulting args per
    touched container. ``problems``: entries dropped because their container is unusable.
    """

    body: dict[str, Any] | None
    record: Record
    args: dict[str, list[str]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.body is not None


def plan_deployment(deployment: dict[str, Any], entries: list[AdapterEntry]) -> Plan:
    """golora's intent for ``deployment`` serving exactly ``entries`` (none: remove golora's
    part). Containers are matched by name; the user's own args and ``--lora-modules`` are kept."""
    meta = deployment.get("metadata") or {}
    pod = pod_spec(deployment)
    old = read_record(deployment)
    owned = owned_fields(deployment)
    containers = {ctr.get("name"): ctr for ctr in pod.get("containers") or []}
    cache_dir = resolver_cache_dir(meta.get("namespace") or "", meta.get("name") or "")
    owned_env = {cname for cname in containers if owned.env_of(cname)}

    by_container: dict[str, list[AdapterEntry]] = {}
    problems: list[Problem] = []
    for e in sorted(entries, key=lambda e: e.name):
        if e.container not in containers:
            _, problem = find_container(deployment, e.container)
            problems.append(problem)  # type: ignore[arg-type]
            continue
        by_container.setdefault(e.container, []).append(e)
    kept = [e for group in by_container.values() for e in group]
    claim = kept[0].claim if kept else None

    new = Record(adapters=kept)
    intent_containers: list[dict[str, Any]] = []
    args_out: dict[str, list[str]] = {}
    changed = False
    touched = sorted(set(by_container) | set(old.containers) | set(owned.args) | {c for c, _ in owned.mounts})
    for cname in touched:
        container = containers.get(cname)
        if container is None:
            continue
        command, current = container.get("command"), list(container.get("args") or [])
        user_args = strip_args(command, current, old.containers.get(cname))
        item: dict[str, Any] = {"name": cname}
        mounts_now = [m for m in container.get("volumeMounts") or [] if m.get("mountPath") == STORE_MOUNT]
        if cname in by_container:
            inv = parse_invocation(command, user_args)
            base = (inv.served_model_names or [None])[0]
            floor, env_changed = _runtime_part(item, container, by_container[cname], cache_dir, cname in owned_env)
            changed = changed or env_changed
            args, crec = desired_args(command, user_args, by_container[cname], base, floor)
            new.containers[cname] = crec
            item["args"] = args
            item["volumeMounts"] = [store_mount()]
            if mounts_now != [store_mount()]:
                changed = True
        else:
            args = user_args
            changed = changed or cname in owned_env  # golora's runtime env goes
            if args and (cname in owned.args or args != current):
                item["args"] = args
            if mounts_now and (cname, STORE_MOUNT) in owned.mounts:
                changed = True  # golora's mount goes
        if "args" in item:
            if item["args"] != current:
                changed = True
        elif cname in owned.args and current:
            changed = True  # golora owned the args and no longer applies them: they go
        if len(item) > 1 or cname in owned.args or (cname, STORE_MOUNT) in owned.mounts:
            intent_containers.append(item)
        args_out[cname] = item.get("args", current if cname not in owned.args else [])

    volumes_now = [v for v in pod.get("volumes") or [] if v.get("name") == STORE_VOLUME]
    intent_pod: dict[str, Any] = {}
    if intent_containers:
        intent_pod["containers"] = intent_containers
    if claim:
        intent_pod["volumes"] = [store_volume(claim)]
        if volumes_now != [store_volume(claim)]:
            changed = True
    elif volumes_now and STORE_VOLUME in owned.volumes:
        changed = True

    annotations_now = meta.get("annotations") or {}
    intent_meta: dict[str, Any] = {"name": meta.get("name"), "namespace": meta.get("namespace")}
    if meta.get("resourceVersion"):
        intent_meta["resourceVersion"] = meta["resourceVersion"]  # optimistic concurrency
    if kept:
        text = new.dumps()
        intent_meta["annotations"] = {ANNOTATION: text}
        if annotations_now.get(ANNOTATION) != text:
            changed = True
    elif ANNOTATION in annotations_now and owned.annotation:
        changed = True

    body = None
    if changed:
        body = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": intent_meta,
                "spec": {"template": {"spec": intent_pod}}}
    return Plan(body, new if kept else Record(), args_out, problems)


def plan_for_owner(deployment: dict[str, Any], owner: str, entry: AdapterEntry | None,
                   live_owners: set[str]) -> tuple[list[Problem], Plan | None]:
    """``owner``'s entry on ``deployment`` becomes ``entry`` (None: removed): the checks'
    problems (then no plan: refuse), else the plan for every adapter it then serves."""
    if entry is not None:
        problems = check_target(deployment, entry, live_owners)
        if problems:
            return problems, None
    return [], plan_deployment(deployment, entries_for(read_record(deployment), owner, entry, live_owners))


def entries_for(record: Record, owner: str, entry: AdapterEntry | None,
                live_owners: set[str] | None = None) -> list[AdapterEntry]:
    """The adapters a Deployment should serve once ``owner``'s entry is ``entry`` (None:
    removed). Entries of AdapterServings that no longer exist are dropped."""
    out = [a for a in record.adapters
           if a.owner != owner and (live_owners is None or a.owner in live_owners)]
    if entry is not None:
        out.append(entry)
    return sorted(out, key=lambda a: (a.container, a.name))
