"""A small blocking HTTP client for a running vLLM: ``GET /v1/models``, ``POST
/v1/load_lora_adapter`` and ``POST /v1/unload_lora_adapter``. The one module of
:mod:`golora.vllm` that does I/O (not re-exported by the package: builders never reach it).

:func:`models`, :func:`load` and :func:`unload` never raise for an HTTP answer: every call
returns the status code and vLLM's own message, so a refused load becomes a condition with
vLLM's words. :func:`model_ids` is the serving probe's plain read (it raises)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .server import (
    LOAD_PATH,
    MODELS_PATH,
    UNLOAD_PATH,
    error_message,
    listed_model_ids,
    load_body,
    unload_body,
)

TIMEOUT = 60.0  # a load reads and validates the adapter synchronously
PROBE_TIMEOUT = 3.0


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange: ``code`` 0 means no answer (connection refused, timeout)."""

    code: int
    message: str
    body: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


def _call(url: str, body: dict[str, Any] | None, timeout: float) -> Answer:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - a pod of a target Deployment
            code, raw = resp.status, resp.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read().decode(errors="replace")
    except (OSError, ValueError) as exc:
        return Answer(0, f"{type(exc).__name__}: {exc}")
    try:
        parsed: Any = json.loads(raw)
    except ValueError:
        parsed = raw
    message = error_message(parsed) if not 200 <= code < 300 else (parsed if isinstance(parsed, str) else "")
    return Answer(code, str(message).strip(), parsed)


def models(base_url: str, timeout: float = 5.0) -> Answer:
    """``GET /v1/models``; ``body`` is the listing."""
    return _call(base_url.rstrip("/") + MODELS_PATH, None, timeout)


def load(base_url: str, name: str, path: str, *, inplace: bool = False, timeout: float = TIMEOUT) -> Answer:
    return _call(base_url.rstrip("/") + LOAD_PATH, load_body(name, path, inplace), timeout)


def unload(base_url: str, name: str, timeout: float = TIMEOUT) -> Answer:
    return _call(base_url.rstrip("/") + UNLOAD_PATH, unload_body(name), timeout)


def model_ids(base_url: str, timeout: float = PROBE_TIMEOUT) -> list[str]:
    """The model ids ``GET /v1/models`` lists. Raises ``OSError`` (``urllib.error.URLError``
    and ``HTTPError`` among them) or ``ValueError`` (not JSON) when there is no listing."""
    with urllib.request.urlopen(base_url.rstrip("/") + MODELS_PATH, timeout=timeout) as resp:  # noqa: S310
        return listed_model_ids(json.loads(resp.read().decode()))
