"""What golora knows about vLLM's LoRA serving (vLLM <= 0.23): flag names, allowed
ranks, and the one adapter validator the trainer and AdapterServing both use.
"""

from __future__ import annotations

import json
import re
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


# --- Command lines ---------------------------------------------------------------------------
# How people start vLLM, and what golora needs to know to read and extend a command line.

FLAG_NO_ENABLE_LORA = "--no-enable-lora"
FLAG_PORT = "--port"
DEFAULT_PORT = 8000
FLAG_CONFIG = "--config"  # a YAML file of flags: golora cannot see inside it

# `vllm serve [model_tag] ...` (the CLI; also the vllm/vllm-openai image's entrypoint since 0.9)
CLI = "vllm"
SERVE = "serve"
# `python -m vllm.entrypoints.openai.api_server --model ...` (older images and guides)
API_SERVER_MODULE_PREFIX = "vllm.entrypoints."
SHELLS = ("sh", "bash", "ash", "dash", "zsh")

# Flags that take no value (argparse store_true / BooleanOptionalAction). Every ``--no-*`` is
# one too. An unknown flag is assumed to take one value unless the next token is a flag.
BOOLEAN_FLAGS: frozenset[str] = frozenset({
    FLAG_ENABLE_LORA, "--enforce-eager", "--trust-remote-code", "--enable-prefix-caching",
    "--enable-chunked-prefill", "--disable-log-requests", "--enable-log-requests", "--disable-log-stats",
    "--enable-auto-tool-choice", "--disable-custom-all-reduce", "--enable-sleep-mode", "--fully-sharded-loras",
    "--enable-expert-parallel", "--disable-frontend-multiprocessing", "--enable-prompt-tokens-details",
    "--enable-server-load-tracking", "--enable-force-include-usage", "--disable-uvicorn-access-log",
    "--disable-fastapi-docs", "--headless", "--skip-tokenizer-init", "--enable-lora-bias",
    "--disable-sliding-window", "--disable-cascade-attn", "--async-scheduling", "--enable-request-id-headers",
    "--return-tokens-as-token-ids", "--enable-tokenizer-info-endpoint", "--enable-log-outputs",
    "--enable-specialize-active-lora", "--specialize-active-lora", "--enable-tower-connector-lora",
    "--enable-dbo", "--enable-eplb", "--use-tqdm-on-load", "--kv-sharing-fast-prefill", "--no-enable-lora",
})
# Flags that take one or more values (nargs='+'): they consume tokens up to the next flag.
MULTI_VALUE_FLAGS: frozenset[str] = frozenset({
    FLAG_LORA_MODULES, FLAG_SERVED_MODEL_NAME, "--middleware", "--prompt-adapters", "--lora-target-modules",
})
# Short aliases that take a value (``-tp 2``); ``-O3`` style carries it attached.
SHORT_FLAGS_WITH_VALUE: frozenset[str] = frozenset({"-tp", "-pp", "-dp", "-dpl", "-dpa", "-dpp", "-dpr",
                                                   "-dcp", "-q", "-O", "-cc", "-ac", "-sc"})


def normalize_flag(flag: str) -> str:
    """vLLM's FlexibleArgumentParser accepts ``--max_lora_rank`` for ``--max-lora-rank``."""
    if flag.startswith("--"):
        return "--" + flag[2:].replace("_", "-")
    return flag


def is_flag_token(token: str) -> bool:
    """A token that starts a new option (not a negative number used as a value)."""
    if not token.startswith("-") or token == "-":
        return False
    return not token[1:].replace(".", "", 1).isdigit()


def takes_value(flag: str) -> bool:
    return not (flag in BOOLEAN_FLAGS or flag.startswith("--no-"))


# --- --lora-modules values ------------------------------------------------------------------

@dataclass(frozen=True)
class LoraModule:
    """One value of ``--lora-modules``: ``name=path`` or JSON ``{"name", "path", "base_model_name"}``.
    ``form`` is "pair", "json" or "invalid" (vLLM would refuse to start on an invalid one)."""

    raw: str
    form: str
    name: str | None = None
    path: str | None = None
    base_model_name: str | None = None


def parse_lora_module(value: str) -> LoraModule:
    """Parse a ``--lora-modules`` value exactly as vLLM's LoRAParserAction does: ``name=path``
    when it contains '=' and no ',' (split on '=', so exactly two parts), otherwise JSON."""
    if "=" in value and "," not in value:
        parts = value.split("=")
        if len(parts) != 2 or not parts[0] or not parts[1]:
            return LoraModule(value, "invalid")
        return LoraModule(value, "pair", parts[0], parts[1])
    try:
        data = json.loads(value)
    except ValueError:
        return LoraModule(value, "invalid")
    if not isinstance(data, dict) or not isinstance(data.get("name"), str) or not isinstance(data.get("path"), str):
        return LoraModule(value, "invalid")
    if set(data) - {"name", "path", "base_model_name"}:
        return LoraModule(value, "invalid")  # vLLM: "Invalid fields for --lora-modules"
    base = data.get("base_model_name")
    return LoraModule(value, "json", data["name"], data["path"], base if isinstance(base, str) else None)


def lora_module_json(name: str, path: str, base_model_name: str | None) -> str:
    """The JSON form golora writes (the ``name=path`` form breaks on '=' or ',')."""
    value: dict[str, str] = {"name": name, "path": path}
    if base_model_name:
        value["base_model_name"] = base_model_name
    return json.dumps(value, separators=(",", ":"))


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
