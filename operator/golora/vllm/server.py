"""What a running vLLM says: its ``GET /v1/models`` listing, and the log line that says why it
stopped."""

from __future__ import annotations

import re

from .cli import LoraModule

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
