"""Saving the adapter as vLLM loads it, atomically.

vLLM needs ``adapter_config.json`` + ``adapter_model.safetensors`` and rejects
``modules_to_save``, DoRA, ``bias != "none"`` and ``lora_bias``; ``golora.vllm.
validate_adapter_dir`` (the check AdapterServing also runs) is applied to the staged files
before anything becomes visible.

The output directory also holds ``checkpoints/``, so it cannot be swapped as a whole. The
install order keeps every moment consistent for readers: (1) stage everything in a temp dir
next to it, (2) validate, (3) remove the old ``adapter_config.json`` (no valid adapter is
visible now), (4) rename the weights into place, (5) rename the config into place (the new
adapter is visible), (6) rename ``result.json``. A run killed at any point leaves the old
adapter, no adapter, or the new one — never a new config over old weights.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from golora.vllm import ADAPTER_CONFIG, ADAPTER_WEIGHTS, AdapterCheck, validate_adapter_dir

log = logging.getLogger(__name__)

RESULT_FILE = "result.json"


def write_json_atomic(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, FILE_MODE)
    os.replace(tmp, path)


def normalize_config(path: Path, base_model: str) -> None:
    """Make adapter_config.json say what vLLM needs: the base, no modules_to_save, no DoRA, no bias."""
    cfg = json.loads(path.read_text())
    cfg["base_model_name_or_path"] = base_model
    cfg["modules_to_save"] = None
    cfg["use_dora"] = False
    cfg["bias"] = "none"
    cfg.pop("lora_bias", None)
    cfg["inference_mode"] = True
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def stage_adapter(model, parent: Path, base_model: str) -> tuple[Path, AdapterCheck]:
    """Write the adapter into a fresh temp dir under ``parent`` and validate it there."""
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".adapter-staging-", dir=parent))
    model.save_pretrained(str(staging), safe_serialization=True)
    (staging / "README.md").unlink(missing_ok=True)
    normalize_config(staging / ADAPTER_CONFIG, base_model)
    return staging, validate_adapter_dir(staging)


FILE_MODE = 0o644  # vLLM runs as another user than the trainer: the files must be world-readable


def install_adapter(staging: Path, dest: Path, result: dict | None) -> int:
    """Move a staged adapter into ``dest`` in the order described above; returns its size in bytes."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in (ADAPTER_WEIGHTS, ADAPTER_CONFIG):
        os.chmod(staging / name, FILE_MODE)
    (dest / ADAPTER_CONFIG).unlink(missing_ok=True)
    os.replace(staging / ADAPTER_WEIGHTS, dest / ADAPTER_WEIGHTS)
    os.replace(staging / ADAPTER_CONFIG, dest / ADAPTER_CONFIG)
    if result is not None:
        write_json_atomic(dest / RESULT_FILE, result)
    shutil.rmtree(staging, ignore_errors=True)
    return (dest / ADAPTER_WEIGHTS).stat().st_size + (dest / ADAPTER_CONFIG).stat().st_size


def clean_stale_staging(dest: Path) -> None:
    """Remove staging dirs a killed run left behind."""
    for sub in (dest, dest / "rejected"):
        if sub.is_dir():
            for p in sub.glob(".adapter-staging-*"):
                shutil.rmtree(p, ignore_errors=True)
