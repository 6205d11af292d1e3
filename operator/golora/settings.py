"""Every ``GOLORA_*`` variable the operator reads, typed and documented once (the operator
Deployment sets them; docs/install.md lists them, and a unit test keeps that table in step).

Image defaults match the Dockerfiles in this repo (``extractor/Dockerfile``,
``trainer_image/Dockerfile``, ``Dockerfile``) at this version. :func:`current` reads the
environment when called; an unset or empty variable takes its default.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

from . import __version__

log = logging.getLogger("golora.settings")


def _port(raw: str) -> int:
    """A port number; anything else turns the server off (0) with a warning, not a crash."""
    try:
        return int(raw)
    except ValueError:
        log.warning("%r is not a port number: the server is off", raw)
        return 0


def setting(env: str, default: Any, doc: str, parse: Callable[[str], Any] = str) -> Any:
    """A field read from ``env`` (``parse``\\ d), else ``default``; ``doc`` is its one description."""
    def read() -> Any:
        raw = os.environ.get(env, "").strip()
        return parse(raw) if raw else default
    return field(default_factory=read, metadata={"env": env, "default": default, "doc": doc})


@dataclass(frozen=True)
class Settings:
    extractor_image: str = setting("GOLORA_EXTRACTOR_IMAGE", f"golora/extractor:{__version__}",
                                   "image of GoDataset Jobs")
    trainer_image: str = setting("GOLORA_TRAINER_IMAGE", f"golora/trainer:{__version__}",
                                 "image of LoraTraining Jobs and adapter validation Jobs")
    image_pull_policy: str = setting("GOLORA_IMAGE_PULL_POLICY", "IfNotPresent", "pull policy of worker Jobs")
    dataset_deadline_seconds: int = setting(
        "GOLORA_DATASET_DEADLINE_SECONDS", 21600,
        "a GoDataset Job still running after this is failed (`0` = no deadline)", int)
    watch_server_timeout: int = setting(
        "GOLORA_WATCH_SERVER_TIMEOUT", 300,
        "seconds after which the apiserver ends a watch and the operator reopens it (a silently dead "
        "connection never stalls the operator for longer)", int)
    backoff: float = setting("GOLORA_BACKOFF", 10.0, "seconds before a failed handler is retried", float)
    workers: int = setting("GOLORA_WORKERS", 16, "threads running handlers (they are short and I/O-bound)", int)
    consistency_timeout: float = setting(
        "GOLORA_CONSISTENCY_TIMEOUT", 30.0,
        "seconds kopf waits to see its own patch before handling an object again", float)
    metrics_port: int = setting("GOLORA_METRICS_PORT", 8000,
                                "Prometheus metrics port (`0` = off; not a number: off, with a warning)", _port)
    metrics_addr: str = setting("GOLORA_METRICS_ADDR", "0.0.0.0", "address the metrics server binds")
    claims_root: str = setting(
        "GOLORA_CLAIMS_ROOT", "",
        "a directory where the operator reads PVC contents as `<root>/<namespace>/<claimName>/` (local "
        "development): an explicit `adapterPath` is then checked in-process; unset, a validation Job checks it")
    models_url: str = setting(
        "GOLORA_MODELS_URL", "http://{pod_ip}:{port}",
        "URL template of the AdapterServing `GET /v1/models` probe; without `{pod_ip}` it is asked once per "
        "Deployment (`{namespace}`, `{deployment}`, `{port}` are filled in)")
    serving_recheck_seconds: float = setting(
        "GOLORA_SERVING_RECHECK_SECONDS", 30.0,
        "interval of the AdapterServing timer while a rollout or the probe is pending (read at start)", float)


def current() -> Settings:
    return Settings()


def variables() -> list[tuple[str, Any, str]]:
    """(variable, default, description) of every setting, in declaration order."""
    return [(f.metadata["env"], f.metadata["default"], f.metadata["doc"]) for f in fields(Settings)]
