"""GPU memory model for QLoRA on a decoder-only transformer, and the micro-batch it allows.

Figures from DESIGN.md (Qwen2.5-7B on a T4, checked against Unsloth's T4 notebook):
weights ~5.6-5.9 GB in NF4 (+ fp16 embeddings/lm_head), adapter + AdamW ~0.16 GB for r16
q/k/v/o, activations with gradient checkpointing ~0.45 MB/token, without ~6.8 MB/token,
logits 1.5-2.4 MB/token with a plain loss. TRL >= 1.x computes the loss through a fused,
chunked LM head (``trl.kernels.chunked_logprob``: 4096-token x 32768-vocab fp32 tiles), so
the full logits never exist; that costs one tile pair, not megabytes per token.

All functions here are pure: shapes and byte counts in, a plan out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from golora.api.loratraining import DEFAULT_TARGET_MODULES

GB = 1e9
GIB = 1024**3
MB = 1e6

CUDA_CONTEXT_BYTES = 1.0 * GB  # CUDA context + cuBLAS/cuDNN workspaces
USABLE_FRACTION = 0.88  # keep 12% for fragmentation and allocator slack
NF4_BYTES_PER_PARAM = 0.5625  # 4 bits + an fp32 absmax per 64-block
NF4_DOUBLE_QUANT_BYTES_PER_PARAM = 0.516  # absmax quantized to 8 bits as well
ADAPTER_BYTES_PER_PARAM = 16  # fp32 param + grad + AdamW m and v
PLAIN_LOSS_BYTES_PER_TOKEN_PER_VOCAB = 12  # 10-16 B: half logits, fp32 upcast, log-softmax, grad
FUSED_TOKEN_TILE = 4096  # trl.kernels.chunked_logprob TOKEN_CHUNK_SIZE
FUSED_VOCAB_CHUNK = 32768  # trl.trainer.utils _CHUNKED_LOGPROB_CHUNK_SIZE
MAX_TOKENS_PER_MICRO_BATCH = 65536  # past this a bigger micro-batch buys no speed
SATURATION_TOKENS = 4096  # a micro-batch this big keeps a 7B's matmuls busy: trade size for no recompute

LOSS_FUSED = "fused"  # TRL's fused chunked LM head (default loss on TRL 1.x)
LOSS_PLAIN = "plain"  # full logits, then cross-entropy


@dataclass(frozen=True)
class ModelShape:
    """What the memory model needs from a causal LM's config."""

    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tie_embeddings: bool = False

    @classmethod
    def from_config(cls, cfg: dict) -> ModelShape:
        """From a config.json dict (or a text_config inside one)."""
        cfg = cfg.get("text_config", cfg) if isinstance(cfg.get("text_config"), dict) else cfg
        hidden = int(cfg["hidden_size"])
        heads = int(cfg.get("num_attention_heads", 1))
        return cls(
            layers=int(cfg["num_hidden_layers"]),
            hidden=hidden,
            intermediate=int(cfg.get("intermediate_size", 4 * hidden)),
            vocab=int(cfg["vocab_size"]),
            heads=heads,
            kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads),
            tie_embeddings=bool(cfg.get("tie_word_embeddings", False)),
        )

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def module_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) of each linear module of one decoder layer, by its usual name."""
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, self.q_dim),
            "k_proj": (h, self.kv_dim),
            "v_proj": (h, self.kv_dim),
            "o_proj": (self.q_dim, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    @property
    def quantizable_params(self) -> int:
        """Parameters of the decoder's linear layers (what NF4 quantizes)."""
        return self.layers * sum(a * b for a, b in self.module_dims().values())

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tie_embeddings else 2)

    @property
    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    @property
    def total_params(self) -> int:
        return self.quantizable_params + self.embedding_params + self.norm_params

    def lora_params(self, r: int, targets: list[str] | tuple[str, ...]) -> int:
        dims = self.module_dims()
        return self.layers * sum(r * (dims[t][0] + dims[t][1]) for t in targets if t in dims)


# Qwen2.5-7B(-Instruct): DESIGN.md / notes section 6.
QWEN25_7B = ModelShape(
    layers=28, hidden=3584, intermediate=18944, vocab=152064, heads=28, kv_heads=4, head_dim=128
)


@dataclass(frozen=True)
class Recipe:
    """How the run trains, apart from the micro-batch: what every estimate below depends on."""

    quantized: bool = True
    double_quant: bool = True
    lora_r: int = 16
    targets: tuple[str, ...] = tuple(DEFAULT_TARGET_MODULES)
    loss: str = LOSS_FUSED
    half_bytes: int = 2  # bytes of a weight/activation element: 2 (fp16/bf16) or 4 (fp32)


@dataclass
class MemoryEstimate:
    """Bytes per component for one micro-batch of ``tokens`` tokens."""

    tokens: int
    context: float
    weights: float
    adapter: float
    activations: float
    logits: float

    @property
    def total(self) -> float:
        return self.context + self.weights + self.adapter + self.activations + self.logits

    def as_dict(self) -> dict:
        return {**asdict(self), "total": self.total}


def weight_bytes(shape: ModelShape, *, quantized: bool, double_quant: bool = True, half_bytes: int = 2) -> float:
    """Frozen base weights: NF4 decoder linears + half-precision embeddings/norms, or all in half_bytes."""
    if not quantized:
        return shape.total_params * half_bytes
    per = NF4_DOUBLE_QUANT_BYTES_PER_PARAM if double_quant else NF4_BYTES_PER_PARAM
    return shape.quantizable_params * per + (shape.embedding_params + shape.norm_params) * half_bytes


def activation_bytes_per_token(
    shape: ModelShape, *, gradient_checkpointing: bool, n_targets: int = 4, act_bytes: int = 2
) -> float:
    """Saved activations per token.

    With checkpointing: each layer's input (L*h) + one layer recomputed (~10h + 4I + qkv) + the
    LoRA dropout copies of the recomputed layer (~n_targets*h): ~0.45 MB/token for Qwen2.5-7B.
    Without: every layer keeps what it saves for backward — norm and projection inputs (~6h),
    rotary q/k and the attention output (2q + 2kv), the MLP's gate/up/act/product (4I) and the
    LoRA dropout copies: ~6.7 MB/token for Qwen2.5-7B (DESIGN.md: ~6.8; measured on an H200 with
    TRL 1.16, bf16, NF4: ~6.1).
    """
    h, i = shape.hidden, shape.intermediate
    if gradient_checkpointing:
        layer = 10 * h + 4 * i + shape.q_dim + 2 * shape.kv_dim + n_targets * h
        return (shape.layers * h + layer) * act_bytes
    layer = 6 * h + 4 * i + 2 * shape.q_dim + 2 * shape.kv_dim + n_targets * h
    return shape.layers * layer * act_bytes


def logits_bytes(shape: ModelShape, tokens: int, *, loss: str = LOSS_FUSED) -> float:
    """Loss-side memory: a plain loss materialises T x V logits several times over; the fused
    head holds one fp32 tile (and its gradient) of at most 4096 tokens x 32768 vocab."""
    if loss == LOSS_PLAIN:
        return tokens * shape.vocab * PLAIN_LOSS_BYTES_PER_TOKEN_PER_VOCAB
    return min(tokens, FUSED_TOKEN_TILE) * min(shape.vocab, FUSED_VOCAB_CHUNK) * 4 * 2 + tokens * shape.hidden * 4


def estimate(
    shape: ModelShape, tokens: int, recipe: Recipe = Recipe(), *, gradient_checkpointing: bool = True
) -> MemoryEstimate:
    """Peak bytes of one training step with ``tokens`` tokens in the micro-batch."""
    r = recipe
    return MemoryEstimate(
        tokens=tokens,
        context=CUDA_CONTEXT_BYTES,
        weights=weight_bytes(shape, quantized=r.quantized, double_quant=r.double_quant, half_bytes=r.half_bytes),
        adapter=shape.lora_params(r.lora_r, r.targets) * ADAPTER_BYTES_PER_PARAM,
        activations=tokens
        * activation_bytes_per_token(
            shape, gradient_checkpointing=gradient_checkpointing, n_targets=len(r.targets), act_bytes=r.half_bytes
        ),
        logits=logits_bytes(shape, tokens, loss=r.loss),
    )


@dataclass
class MicroBatchPlan:
    micro_batch_size: int
    gradient_accumulation_steps: int
    gradient_checkpointing: bool
    seq_len: int
    gpu_bytes: float
    estimate: MemoryEstimate
    reason: str
    notes: list[str] = field(default_factory=list)

    @property
    def effective_batch_size(self) -> int:
        return self.micro_batch_size * self.gradient_accumulation_steps


def accumulation_for(micro_batch: int, effective_batch: int) -> tuple[int, int]:
    """(micro_batch, accumulation) whose product is the effective batch where possible.

    The largest divisor of the effective batch not above ``micro_batch`` is used when it keeps at
    least half the micro-batch (4 x 4 rather than 6 x 3 = 18 for 16); otherwise the micro-batch
    stays and the product rounds up.
    """
    micro_batch = max(1, min(micro_batch, effective_batch))
    divisor = max(d for d in range(1, micro_batch + 1) if effective_batch % d == 0)
    if 2 * divisor >= micro_batch:
        return divisor, effective_batch // divisor
    return micro_batch, math.ceil(effective_batch / micro_batch)


def max_tokens(
    gpu_bytes: float, shape: ModelShape, recipe: Recipe = Recipe(), *, gradient_checkpointing: bool
) -> int:
    """Largest token count per micro-batch whose estimate fits USABLE_FRACTION of gpu_bytes."""
    budget = USABLE_FRACTION * gpu_bytes

    def fits(tokens: int) -> bool:
        return estimate(shape, tokens, recipe, gradient_checkpointing=gradient_checkpointing).total <= budget

    if not fits(0):
        return 0
    lo, hi = 0, 1 << 22
    while lo < hi:  # estimate() is monotone in tokens
        mid = (lo + hi + 1) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def plan_micro_batch(
    gpu_bytes: float,
    shape: ModelShape,
    seq_len: int,
    effective_batch: int,
    recipe: Recipe = Recipe(),
    *,
    requested: int | None = None,
) -> MicroBatchPlan:
    """Micro-batch, accumulation and checkpointing for sequences of up to ``seq_len`` tokens.

    Gradient checkpointing (recompute: ~1.5x the forward FLOPs) is turned off when, without it,
    the micro-batch still reaches the checkpointed one or SATURATION_TOKENS tokens (activations
    are ~18x bigger without it, so this happens only on large GPUs).
    ``requested`` (an explicit spec value or the operator's OOM override) is kept as is; the
    plan then only decides checkpointing and reports the estimate.
    """
    notes: list[str] = []
    t_ckpt = max_tokens(gpu_bytes, shape, recipe, gradient_checkpointing=True)
    t_full = max_tokens(gpu_bytes, shape, recipe, gradient_checkpointing=False)
    cap = min(effective_batch, max(1, MAX_TOKENS_PER_MICRO_BATCH // max(seq_len, 1)))
    if requested is not None:
        micro = max(1, min(requested, effective_batch))
        ckpt = micro * seq_len > t_full
        reason = f"micro-batch {micro} requested"
        if micro * seq_len > t_ckpt:
            notes.append(
                f"{micro} x {seq_len} tokens exceeds the estimated capacity of {t_ckpt} tokens; it may run out of memory"
            )
    else:
        by_ckpt = max(1, min(cap, t_ckpt // max(seq_len, 1)))
        by_full = min(cap, t_full // max(seq_len, 1))
        if t_ckpt < seq_len:
            notes.append(f"even one {seq_len}-token sequence exceeds the estimated capacity ({t_ckpt} tokens)")
        if by_full >= 1 and (by_full >= by_ckpt or by_full * seq_len >= SATURATION_TOKENS):
            micro, ckpt = by_full, False
            reason = f"{seq_len}-token sequences: {t_full} tokens fit without gradient checkpointing"
        else:
            micro, ckpt = by_ckpt, True
            reason = f"{seq_len}-token sequences: {t_ckpt} tokens fit with gradient checkpointing"
    micro, accumulation = accumulation_for(micro, effective_batch)
    est = estimate(shape, micro * seq_len, recipe, gradient_checkpointing=ckpt)
    return MicroBatchPlan(micro, accumulation, ckpt, seq_len, gpu_bytes, est, reason, notes)
