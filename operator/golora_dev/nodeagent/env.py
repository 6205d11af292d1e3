"""A container's environment and command line, resolved as the kubelet resolves them, then
mapped onto this machine's paths.

Kubelet rules: ``envFrom`` first, then ``env`` in order; ``valueFrom`` reads the pod's
fields, Secrets and ConfigMaps; ``$(VAR)`` in values, command and args expands to a variable
defined earlier (``$$`` escapes, unknown references stay as written).

Local mapping (what a mount namespace would do in a real container): every string that
starts with a volume's mount path is rewritten to the directory that backs the volume,
also inside JSON documents in env values (golora's worker config).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from typing import Any

_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _REF.sub(sub, value)


def rewrite(value: Any, mounts: dict[str, str]) -> Any:
    """Map container paths to local ones in a string, or in every string of a JSON value."""
    if isinstance(value, dict):
        return {k: rewrite(v, mounts) for k, v in value.items()}
    if isinstance(value, list):
        return [rewrite(v, mounts) for v in value]
    if not isinstance(value, str):
        return value
    for container_path in sorted(mounts, key=len, reverse=True):
        if value == container_path or value.startswith(container_path.rstrip("/") + "/"):
            return mounts[container_path] + value[len(container_path):]
        if "=" in value:  # --flag=/path, or vLLM's --lora-modules name=/path
            flag, _, rest = value.partition("=")
            if rest == container_path or rest.startswith(container_path.rstrip("/") + "/"):
                return f"{flag}={mounts[container_path]}{rest[len(container_path):]}"
    return value


def rewrite_env_value(value: str, mounts: dict[str, str]) -> str:
    """Env values may hold a JSON document (the worker config): rewrite inside it."""
    stripped = value.lstrip()
    if stripped.startswith(("{", "[")):
        try:
            return json.dumps(rewrite(json.loads(value), mounts))
        except ValueError:
            pass
    return rewrite(value, mounts)


def field_value(pod: dict[str, Any], path: str) -> str:
    """``fieldRef.fieldPath`` of the downward API."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"), "status.podIP": status.get("podIP"),
        "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return simple[path] or ""
    if path in ("metadata.labels", "metadata.annotations"):
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(path.split(".")[1]) or {}).items()))
    raise ValueError(f"unsupported fieldPath {path}")


def resource_value(container: dict[str, Any], ref: dict[str, Any], node_capacity: dict[str, str]) -> str:
    kind, _, resource = ref["resource"].partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(resource) or node_capacity.get(resource, "0")
    return str(value)


Lookup = Callable[[str, str, str], str | None]  # (kind "secret"|"configmap", name, key) -> value


def container_env(pod: dict[str, Any], container: dict[str, Any], lookup: Lookup,
                  base: dict[str, str], node_capacity: dict[str, str]) -> dict[str, str]:
    """The environment the kubelet gives ``container`` (on top of ``base``)."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "configmap" if source.get("configMapRef") else "secret"
        for key, value in (lookup(kind, ref["name"], "*") or {}).items():  # type: ignore[union-attr]
            env[prefix + key] = value
    for var in container.get("env") or []:
        name, source = var["name"], var.get("valueFrom")
        if source is None:
            env[name] = expand(var.get("value", ""), env)
        elif "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"], node_capacity)
        else:
            kind = "secret" if "secretKeyRef" in source else "configmap"
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            value = lookup(kind, ref["name"], ref["key"])
            if value is None:
                if ref.get("optional"):
                    continue
                raise LookupError(f"{kind} {ref['name']} has no key {ref['key']}")
            env[name] = value
    return env


def decode_secret(data: dict[str, str] | None) -> dict[str, bytes]:
    return {k: base64.b64decode(v) for k, v in (data or {}).items()}
