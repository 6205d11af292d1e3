"""What golora knows about vLLM's LoRA serving (vLLM <= 0.23): flag names, allowed
ranks, and the one adapter validator the trainer and AdapterServing both use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# --max-lora-rank accepts only these values (default 16); round the largest adapter rank up.
ALLOWED_MAX_LORA_RANKS: tuple[int, ...] = (1, 8, 16, 32, 64, 128, 256, 320, 512)
DEFAULT_MAX_LORA_RANK = 16
DEFAULT_MAX_LORAS = 1

FLAG_ENABLE_LORA = "--enable-lora"
FLAG_LORA_MODULES = "--lora-modules"
FLAG_MAX_LORA_RANK = "--max-lora-rank"
FLAG_MAX_LORAS = "--max-loras"
FLAG_MAX_CPU_LORAS = "--max-cpu-loras"
FLAG_MODEL = "--model"
FLAG_SERVED_MODEL_NAME = "--served-model-name"
# Removed from vLLM: never emit it.
REMOVED_FLAGS = ("--lora-extra-vocab-size",)

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# Characters that break vLLM's name=path form or a client's "model" field.
FORBIDDEN_SERVED_NAME_CHARS = "=,/ \t\n"


def max_lora_rank_for(rank: int) -> int:
    """Smallest value --max-lora-rank accepts that is >= rank."""
    for allowed in ALLOWED_MAX_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's maximum {ALLOWED_MAX_LORA_RANKS[-1]}")


@dataclass
class AdapterCheck:
    """Outcome of validating an adapter directory for vLLM."""

    ok: bool
    problems: list[str] = field(default_factory=list)
    rank: int | None = None
    base_model: str | None = None
    target_modules: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        return "; ".join(self.problems) if self.problems else "adapter is servable by vLLM"


def validate_adapter_dir(path: str | Path) -> AdapterCheck:
    """Check that a PEFT adapter directory is one vLLM will load.

    vLLM needs adapter_config.json + adapter_model.safetensors and rejects
    modules_to_save (embed_tokens / lm_head), DoRA, bias != "none" and lora_bias;
    a rank above 512 can never be served. A static adapter that fails to load stops
    the whole server, so this runs before anything is patched.
    """
    root = Path(path)
    problems: list[str] = []
    cfg_path = root / ADAPTER_CONFIG
    if not root.is_dir():
        return AdapterCheck(False, [f"adapter directory {root} does not exist"])
    if not (root / ADAPTER_WEIGHTS).is_file():
        problems.append(f"{ADAPTER_WEIGHTS} is missing (vLLM loads only safetensors)")
    if not cfg_path.is_file():
        problems.append(f"{ADAPTER_CONFIG} is missing")
        return AdapterCheck(False, problems)
    try:
        cfg = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        return AdapterCheck(False, problems + [f"{ADAPTER_CONFIG} is not valid JSON: {exc}"])
    rank = cfg.get("r")
    if not isinstance(rank, int) or rank < 1:
        problems.append(f"rank r={rank!r} is not a positive integer")
        rank = None
    elif rank > ALLOWED_MAX_LORA_RANKS[-1]:
        problems.append(f"rank {rank} exceeds vLLM's maximum --max-lora-rank {ALLOWED_MAX_LORA_RANKS[-1]}")
    if cfg.get("modules_to_save"):
        problems.append(f"modules_to_save={cfg['modules_to_save']} is not supported by vLLM")
    if cfg.get("use_dora"):
        problems.append("DoRA adapters (use_dora) are not supported by vLLM")
    if cfg.get("bias", "none") != "none":
        problems.append(f"bias={cfg.get('bias')!r} is not supported by vLLM (must be 'none')")
    if cfg.get("lora_bias"):
        problems.append("lora_bias is not supported by vLLM")
    base = cfg.get("base_model_name_or_path")
    if not base:
        problems.append("base_model_name_or_path is missing")
    targets = cfg.get("target_modules") or []
    if isinstance(targets, str):
        targets = [targets]
    return AdapterCheck(not problems, problems, rank, base, list(targets))
