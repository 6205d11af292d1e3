"""What vLLM will load: the adapter validator the trainer and AdapterServing both use, and
whether an adapter's base model is the served model (quantized variants included)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .flags import ALLOWED_MAX_LORA_RANKS

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"


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


# --- Model families ---------------------------------------------------------------------------
# An adapter trained on Qwen/Qwen2.5-7B-Instruct loads on Qwen/Qwen2.5-7B-Instruct-AWQ: vLLM
# needs matching module names and shapes, which quantized variants keep. Their names differ by
# these trailing tokens.
QUANTIZATION_NAME_TOKENS: frozenset[str] = frozenset({
    "awq", "gptq", "int4", "int8", "int3", "int2", "bnb", "4bit", "8bit", "gguf", "ggml", "fp8", "fp4", "nvfp4",
    "mxfp4", "dynamic", "static", "w4a16", "w8a8", "w8a16", "w4a4", "exl2", "exl3", "mlx", "nf4", "quantized",
    "unsloth", "marlin", "hqq", "aqlm", "eetq", "squeezellm", "compressed", "ct", "bf16", "fp16", "4bits", "8bits",
})


def model_family(name: str) -> str:
    """The model a name or path stands for, without org, directory and quantization suffixes:
    ``Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4`` and ``/model-cache/Qwen2.5-7B-Instruct`` ->
    ``qwen2.5-7b-instruct``."""
    base = name.strip().rstrip("/")
    for scheme in ("hf://", "pvc://", "oci://", "s3://", "gs://"):
        if base.startswith(scheme):
            base = base[len(scheme):]
    base = base.rsplit("/", 1)[-1].lower()
    tokens = base.split("-")
    while len(tokens) > 1:
        last = tokens[-1]
        # "quantized.w4a16" (RedHatAI / neuralmagic) and "Int4" style tokens
        pieces = [p for p in last.split(".") if p]
        if pieces and all(p in QUANTIZATION_NAME_TOKENS for p in pieces):
            tokens.pop()
            continue
        break
    return "-".join(tokens)


def same_family(adapter_base: str, served: str) -> bool:
    return model_family(adapter_base) == model_family(served)
