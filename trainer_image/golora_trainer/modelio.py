"""The device, the base model's source, the pre-flight checks, and loading.

Pre-flight runs before any weight is read: a base whose config already carries a
``quantization_config`` (AWQ, GPTQ, ...) cannot be quantized again by bitsandbytes — the
blog's first crash — so a 4-bit request on such a base fails at once with what to do.
Offline mode (HF_HUB_OFFLINE) is honoured, the revision pinned, and a token read from the
mounted Secret file, never from the command line.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from golora.api.worker import REASON_INVALID_CONFIG, REASON_PREQUANTIZED_BASE, TrainerConfig

from . import settings
from .errors import TrainerError
from .precision import PrecisionPlan, torch_dtype

log = logging.getLogger(__name__)



@dataclass
class Device:
    cuda: bool
    name: str
    capability: tuple[int, int] | None = None
    total_bytes: int | None = None
    memory_capped: bool = False
    index: int = 0  # CUDA device of this rank (LOCAL_RANK under torchrun)

    def describe(self) -> str:
        if not self.cuda:
            return "cpu"
        cc = f"{self.capability[0]}.{self.capability[1]}" if self.capability else "?"
        gib = (self.total_bytes or 0) / 1024**3
        return f"{self.name} (compute capability {cc}, {gib:.1f} GiB{' capped' if self.memory_capped else ''})"


def detect_device(index: int = 0) -> Device:
    """This rank's device: CUDA device ``index`` (its local rank), else the CPU. Tests and
    benchmarks can pretend it is another GPU (``settings``: e.g. a T4 on an H200)."""
    import torch

    now = settings.current()
    if now.force_cpu or not torch.cuda.is_available():
        return Device(cuda=False, name="cpu")
    props = torch.cuda.get_device_properties(index)
    capability = now.gpu_compute_capability or (props.major, props.minor)
    total = int(props.total_memory)
    capped = False
    if now.gpu_memory_gib:
        want = int(now.gpu_memory_gib * 1024**3)
        if want < total:
            torch.cuda.set_per_process_memory_fraction(want / total, index)
            total, capped = want, True
    return Device(cuda=True, name=props.name, capability=capability, total_bytes=total, memory_capped=capped,
                  index=index)


@dataclass
class ModelSource:
    ref: str  # what from_pretrained gets: a local directory or a hub id
    local: bool
    adapter_base_name: str  # base_model_name_or_path written into adapter_config.json
    revision: str | None
    token: str | None

    @property
    def load_kwargs(self) -> dict:
        kw: dict = {}
        if self.revision and not self.local:
            kw["revision"] = self.revision
        if self.token:
            kw["token"] = self.token
        if self.local or os.environ.get("HF_HUB_OFFLINE") == "1":
            kw["local_files_only"] = True
        return kw


def resolve_source(cfg: TrainerConfig) -> ModelSource:
    base = cfg.spec.base_model
    token = None
    if cfg.hf_token_file:
        try:
            token = Path(cfg.hf_token_file).read_text().strip() or None
        except OSError as exc:
            raise TrainerError(REASON_INVALID_CONFIG, f"token file {cfg.hf_token_file}: {exc}") from exc
    if cfg.model_path or base.path:
        ref = cfg.model_path or str(Path(cfg.store_root) / (base.path or ""))
        if not Path(ref, "config.json").is_file():
            raise TrainerError(REASON_INVALID_CONFIG, f"base model directory {ref} has no config.json")
        return ModelSource(ref, True, base.name or ref, base.revision, token)
    if not base.name:
        raise TrainerError(REASON_INVALID_CONFIG, "baseModel needs a name or a path")
    return ModelSource(base.name, False, base.name, base.revision, token)


def prequantized_method(config: dict) -> str | None:
    """The quantization a checkpoint's config.json already carries (awq, gptq, ...), if any."""
    for cfg in (config, config.get("text_config") or {}):
        q = cfg.get("quantization_config") if isinstance(cfg, dict) else None
        if q:
            if isinstance(q, dict):
                return str(q.get("quant_method") or q.get("quant_type") or "unknown")
            return str(getattr(q, "quant_method", "unknown"))
    return None


def check_prequantized(config: dict, model_name: str, quantization: str) -> None:
    """Refuse to 4-bit-quantize a checkpoint that is already quantized (AWQ, GPTQ, ...)."""
    method = prequantized_method(config)
    if method is None or quantization != "nf4":
        return
    raise TrainerError(
        REASON_PREQUANTIZED_BASE,
        f"base model {model_name} is already quantized ({method}); bitsandbytes cannot quantize it again to "
        f"4-bit NF4. Train on the full-precision base (e.g. Qwen/Qwen2.5-7B-Instruct rather than "
        f"Qwen/Qwen2.5-7B-Instruct-AWQ) and serve the adapter on the quantized model: vLLM applies a LoRA "
        f"trained on the full-precision base to its {method.upper()} variant.",
    )


def load_config_dict(src: ModelSource) -> dict:
    """config.json of the base, read without loading weights (pre-flight)."""
    if src.local:
        try:
            return json.loads(Path(src.ref, "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise TrainerError(REASON_INVALID_CONFIG, f"{src.ref}/config.json: {exc}") from exc
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(src.ref, **src.load_kwargs).to_dict()
    except OSError as exc:
        offline = " (HF_HUB_OFFLINE=1: pre-populate the cache or use baseModel.path)" if os.environ.get(
            "HF_HUB_OFFLINE") == "1" else ""
        raise TrainerError(REASON_INVALID_CONFIG, f"cannot load base model {src.ref}: {exc}{offline}") from exc


def load_tokenizer(src: ModelSource):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(src.ref, **src.load_kwargs)
    except (OSError, ValueError) as exc:
        raise TrainerError(REASON_INVALID_CONFIG, f"cannot load the tokenizer of {src.ref}: {exc}") from exc
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(src: ModelSource, plan: PrecisionPlan, device: Device, *, quantization: str, double_quant: bool):
    """The frozen base: NF4 + double quant through bitsandbytes on CUDA; on CPU fp32, unquantized."""
    from transformers import AutoModelForCausalLM

    kwargs: dict = {"dtype": torch_dtype(plan.load_dtype), "attn_implementation": "sdpa", **src.load_kwargs}
    quantized = False
    if device.cuda:
        kwargs["device_map"] = {"": device.index}
        if quantization == "nf4":
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=double_quant,
                bnb_4bit_compute_dtype=torch_dtype(plan.compute_dtype),
            )
            quantized = True
    elif quantization == "nf4":
        log.info("no CUDA device: loading the base in %s without 4-bit quantization", plan.load_dtype)
    try:
        model = AutoModelForCausalLM.from_pretrained(src.ref, **kwargs)
    except (OSError, ValueError) as exc:
        if "out of memory" in str(exc).lower():
            raise
        raise TrainerError(REASON_INVALID_CONFIG, f"cannot load base model {src.ref}: {exc}") from exc
    model.config.use_cache = False
    return model, quantized
