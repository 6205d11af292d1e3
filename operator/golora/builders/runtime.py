"""Runtime loading (``spec.loading: Runtime``), the Deployment side, as pure functions: what a
vLLM container needs so adapters can be loaded into it while it runs, and whether it has it.

A container prepared for runtime loading has ``--enable-lora`` (with ``--max-lora-rank`` and
``--max-loras`` sized once, see :data:`RUNTIME_MAX_LORAS`), vLLM's runtime LoRA API switched on
and its filesystem resolver reading golora's resolver directory for this Deployment on the
store (so a pod that starts later loads any golora adapter on its first request, before golora
has loaded it). Once prepared, adding, updating or removing a runtime adapter never changes
the pod template again: that is what keeps the pods running.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .. import vllm

RESTART = "Restart"
RUNTIME = "Runtime"

# Store-relative root of the directories vLLM's filesystem resolver reads: one per
# Deployment (its adapter_config.json files name that Deployment's --model).
RESOLVER_ROOT = "lora-resolver"
# Versioned snapshots of each adapter under a Deployment's resolver directory; the entry the
# resolver reads (<dir>/<served name>) is a symlink to the newest one. A served name starts
# with a letter or digit, so it can never be this directory.
VERSIONS_DIR = ".versions"
# --max-loras for a Deployment prepared for runtime loading with maxLoras auto: adapters can
# be added later without a restart, so leave room for a few in one batch.
RUNTIME_MAX_LORAS = 4


def resolver_dir(namespace: str, deployment: str) -> str:
    """Store-relative directory the Deployment's resolver reads (``VLLM_LORA_RESOLVER_CACHE_DIR``)."""
    return f"{RESOLVER_ROOT}/{namespace}/{deployment}"


def version_dir(namespace: str, deployment: str, served_name: str, version: str) -> str:
    """Store-relative snapshot of one version of an adapter for one Deployment."""
    return f"{resolver_dir(namespace, deployment)}/{VERSIONS_DIR}/{served_name}-{version}"


def version_of(*parts: Any) -> str:
    """A short stable id for what identifies an adapter version (path, training generation,
    when it finished): a retrained adapter gets a new one, the same adapter the same one."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _env_value(container: dict[str, Any], name: str) -> str | None:
    for item in container.get("env") or []:
        if item.get("name") == name:
            return item.get("value")
    return None


def _plugins(value: str | None) -> list[str]:
    return [p.strip() for p in (value or "").split(",") if p.strip()]


def container_env(container: dict[str, Any], cache_dir: str) -> list[dict[str, str]]:
    """The env entries golora applies to an engine container for runtime loading. Plugins the
    user already lists in ``VLLM_PLUGINS`` are kept (the resolver is added to them)."""
    plugins = _plugins(_env_value(container, vllm.ENV_PLUGINS))
    if vllm.PLUGIN_FILESYSTEM_RESOLVER not in plugins:
        plugins.append(vllm.PLUGIN_FILESYSTEM_RESOLVER)
    return [
        {"name": vllm.ENV_ALLOW_RUNTIME, "value": vllm.ALLOW_RUNTIME_ON},
        {"name": vllm.ENV_PLUGINS, "value": ",".join(plugins)},
        {"name": vllm.ENV_RESOLVER_CACHE_DIR, "value": cache_dir},
    ]


def env_differs(container: dict[str, Any], wanted: list[dict[str, str]]) -> bool:
    return any(_env_value(container, e["name"]) != e["value"] or
               any("valueFrom" in i for i in container.get("env") or [] if i.get("name") == e["name"])
               for e in wanted)


def missing_for_runtime(container: dict[str, Any], cache_dir: str, *, lora_enabled: bool,
                        store_mount: str) -> list[str]:
    """What the container lacks for runtime loading (empty: prepared, nothing to write)."""
    missing = []
    if not lora_enabled:
        missing.append(vllm.FLAG_ENABLE_LORA)
    allow = (_env_value(container, vllm.ENV_ALLOW_RUNTIME) or "").strip().lower()
    if allow not in vllm.ALLOW_RUNTIME_VALUES:
        missing.append(f"{vllm.ENV_ALLOW_RUNTIME}={vllm.ALLOW_RUNTIME_ON}")
    if vllm.PLUGIN_FILESYSTEM_RESOLVER not in _plugins(_env_value(container, vllm.ENV_PLUGINS)):
        missing.append(f"{vllm.ENV_PLUGINS} with {vllm.PLUGIN_FILESYSTEM_RESOLVER}")
    if _env_value(container, vllm.ENV_RESOLVER_CACHE_DIR) != cache_dir:
        missing.append(f"{vllm.ENV_RESOLVER_CACHE_DIR}={cache_dir}")
    if not any(m.get("mountPath") == store_mount for m in container.get("volumeMounts") or []):
        missing.append(f"the store mounted at {store_mount}")
    return missing


def resolver_dir_of(snapshot: str) -> str:
    """The resolver directory a snapshot (:func:`version_dir`) lies in."""
    return snapshot.rsplit(f"/{VERSIONS_DIR}/", 1)[0]
